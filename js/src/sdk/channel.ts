// The SDK's end of the channel: inject the hidden frame, wait for its "ready"
// (source, then shape, then origin), answer with "init" and a transferred
// MessagePort sent to the frame's concrete origin, then carry commands (with
// ids, settled by replies) and events over that port. Closing is idempotent.
import {
  type CommandArgs,
  type CommandName,
  type CommandOf,
  type CommandReply,
  type EventMessage,
  handshake,
  isEvent,
  isReady,
  isReply,
  VERSION,
} from "../protocol";

// After the iframe's load event, how long a missing "ready" may take before we
// conclude the browser refused to run the frame (frame-ancestors, 404, offline).
const FRAME_GRACE_MS = 2000;

export interface FrameChannel {
  /** Resolves once the frame's port is open; rejects if the frame never starts. */
  readonly ready: Promise<void>;
  isOpen(): boolean;
  /** The frame never started (ready rejected) or the channel was closed: it is no use. */
  isDead(): boolean;
  /** Runs a command in the frame; settles with its reply. */
  command<N extends CommandName>(name: N, args: CommandArgs<N>): Promise<CommandReply<N>>;
  /** Rejects what is pending, closes the port, removes the iframe and every listener. */
  close(): void;
}

interface Pending {
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
}

export function openFrameChannel(
  frameUrl: URL,
  origin: string,
  onEvent: (event: EventMessage) => void,
): FrameChannel {
  let iframe: HTMLIFrameElement | null = document.createElement("iframe");
  let port: MessagePort | null = null;
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const ended = () => new Error("AnyReach: the session has ended.");
  let dead = false;
  let stopHandshake: (error?: Error) => void = () => {};

  function onPortMessage(message: MessageEvent) {
    const msg: unknown = message.data;
    if (isReply(msg)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (!p) return;
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(msg.error || "AnyReach: the listen frame failed."));
    } else if (isEvent(msg)) {
      onEvent(msg);
    }
  }

  const ready = new Promise<void>((resolve, reject) => {
    const el = iframe as HTMLIFrameElement;
    let grace: ReturnType<typeof setTimeout> | undefined;
    const onMessage = (message: MessageEvent) => {
      // Source first, then shape, then origin.
      if (!el.contentWindow || message.source !== el.contentWindow) return;
      const msg: unknown = message.data;
      if (!isReady(msg)) return;
      if (message.origin !== origin || port) return;
      if (msg.version !== VERSION) {
        return stopHandshake(
          new Error(
            `AnyReach: the listen frame speaks protocol version ${String(msg.version)}, ` +
              `this SDK speaks ${VERSION}. Reload the page to load matching versions.`,
          ),
        );
      }
      const channel = new MessageChannel();
      port = channel.port1;
      port.onmessage = onPortMessage;
      // The concrete origin, never "*": the port will carry the token.
      el.contentWindow.postMessage(handshake("init"), origin, [channel.port2]);
      stopHandshake();
      resolve();
    };
    const onLoad = () => {
      if (!port && grace === undefined) {
        grace = setTimeout(
          () =>
            stopHandshake(
              new Error(
                `AnyReach: the listen frame ${frameUrl.href} did not start. Check that the ` +
                  `host is reachable and allows this page's origin (${location.origin}) to ` +
                  "embed it (its EMBED_ORIGINS setting).",
              ),
            ),
          FRAME_GRACE_MS,
        );
      }
    };
    stopHandshake = (error) => {
      clearTimeout(grace);
      window.removeEventListener("message", onMessage);
      el.removeEventListener("load", onLoad);
      if (error && !port) dead = true;
      if (error) reject(error);
    };
    window.addEventListener("message", onMessage);
    el.addEventListener("load", onLoad);
    el.src = frameUrl.href;
    el.allow = "autoplay";
    el.title = "Anyreach live listen";
    el.tabIndex = -1;
    el.setAttribute("aria-hidden", "true");
    const style = el.style;
    style.position = "fixed";
    style.width = style.height = "1px";
    style.left = style.top = "-10px";
    style.border = "0";
    style.opacity = "0";
    style.pointerEvents = "none";
    (document.body || document.documentElement).appendChild(el);
  });
  ready.catch(() => {});

  return {
    ready,
    isOpen: () => port !== null,
    isDead: () => dead,
    command(name, args) {
      return new Promise((resolve, reject) => {
        if (!port) return reject(new Error("AnyReach: the listen frame is not connected."));
        const id = nextId++;
        pending.set(id, { resolve: resolve as (result: unknown) => void, reject });
        const msg: CommandOf<typeof name> = { type: "command", id, name, args };
        port.postMessage(msg);
      });
    },
    close() {
      dead = true;
      stopHandshake(ended());
      for (const p of pending.values()) p.reject(ended());
      pending.clear();
      if (port) {
        port.onmessage = null;
        port.close();
        port = null;
      }
      iframe?.remove();
      iframe = null;
    },
  };
}
