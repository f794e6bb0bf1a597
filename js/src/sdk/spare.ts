// The loader's spare frame: once the embedding page has loaded, one hidden frame
// is injected ahead of any listen(), so that the frame's process, document and
// livekit-client are ready when a click calls listen().connect(). The first
// listen() adopts it (handshake and all) instead of injecting its own; after that
// first listen() no spare is ever made. A spare that fails to start (a host that
// does not allow this page to embed it, offline) removes itself, silently: the
// listen() after it injects a frame as it would without a spare, and reports
// whatever that one does.
import type { FrameStart } from "./channel";

// requestIdleCallback's deadline: a busy page still gets its spare soon after load.
export const SPARE_IDLE_TIMEOUT_MS = 500;

/** The one spare a loader may hold. Generic over the frame for the unit tests. */
export interface SpareSlot<F> {
  /** Starts the spare now, unless listen() has already taken (or refused) the slot. */
  fill(): void;
  /** For the first listen(): the spare if it is still worth adopting; later calls get null. */
  take(): F | null;
}

/** What the slot needs of a frame: whether it failed, and how to get rid of it. */
export type SpareFrame = Pick<FrameStart, "port" | "failed" | "discard">;

export function spareSlot<F extends SpareFrame>(start: () => F): SpareSlot<F> {
  let spare: F | null = null;
  let adopted: F | null = null;
  let taken = false;
  return {
    fill() {
      if (taken || spare) return;
      let frame: F;
      try {
        frame = start();
      } catch {
        // Nothing on a page that never called listen() may throw: without a spare,
        // listen() injects its frame itself (and throws to its caller, if it must).
        return;
      }
      spare = frame;
      // Failed and never adopted: gone from the page. An adopted frame's failure is
      // its session's to handle, exactly as for a frame the session injected.
      frame.port.catch((error: Error) => {
        if (spare === frame) spare = null;
        if (adopted !== frame) frame.discard(error);
      });
    },
    take() {
      taken = true;
      const frame = spare;
      spare = null;
      if (!frame || frame.failed()) return null;
      adopted = frame;
      return frame;
    },
  };
}

/**
 * Runs `fill` once the page has loaded and is idle (or SPARE_IDLE_TIMEOUT_MS after
 * its load event at the latest): the spare never delays the page's own load.
 */
export function afterPageLoad(fill: () => void): void {
  const whenIdle = () => {
    if (typeof requestIdleCallback === "function") {
      requestIdleCallback(() => fill(), { timeout: SPARE_IDLE_TIMEOUT_MS });
    } else {
      setTimeout(fill, 0); // browsers without it (Safari)
    }
  };
  if (document.readyState === "complete") whenIdle();
  else window.addEventListener("load", whenIdle, { once: true });
}
