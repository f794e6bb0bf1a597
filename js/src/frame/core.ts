// The hidden frame: wires the channel to its parent (channel.ts) to a session
// on a LiveKit adapter (session.ts), and reports its own failures to the page.
import type { AdapterFactory } from "./adapter";
import { parentChannel } from "./channel";
import { errorMessage } from "./errors";
import { frameSession } from "./session";

export interface FrameOptions {
  createAdapter: AdapterFactory;
  /** Test builds only: told about every message the frame ignores, and why. */
  observe?: (what: string) => void;
}

export function startFrame(options: FrameOptions): void {
  const parentWindow = window.parent;
  if (parentWindow === window) {
    document.body.textContent = "This page is used by the Anyreach listen SDK inside an iframe.";
    return;
  }
  const meta = document.querySelector<HTMLMetaElement>('meta[name="anyreach-livekit-url"]');
  const channel = parentChannel(parentWindow, options.observe || (() => {}));
  const session = frameSession({
    createAdapter: options.createAdapter,
    livekitUrl: meta ? meta.content : "",
    peer: channel,
  });

  const report = (what: string) =>
    channel.send("error", { message: `AnyReach: the listen frame failed: ${what}` });
  window.addEventListener("error", (event) => report(event.message));
  window.addEventListener("unhandledrejection", (event) => report(errorMessage(event.reason)));
  channel.listen(session.commands);
  // After "ready" is on its way: the handshake's round trip overlaps this work.
  session.prepare();
}
