// The SDK's end of the channel, its transport: inject the hidden frame, wait for
// its "ready" (source, then shape, then origin), answer with "init" and a
// transferred MessagePort sent to the frame's concrete origin (startFrame, which
// the loader's spare frame also runs, before any session), then carry commands
// (with ids, settled by replies) and events over that port (openFrameChannel).
// Closing is idempotent.
import {
  type CommandArgs,
  type CommandName,
  type CommandOf,
  type CommandReply,
  type EventHandlers,
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

/** Hands one event to its own handler. An explicit allow-list: nothing is looked up by name. */
export function deliver(handlers: EventHandlers, msg: EventMessage): void {
  switch (msg.name) {
    case "state":
      return handlers.state(msg.data);
    case "transcript":
      return handlers.transcript(msg.data);
    case "agentDisconnected":
      return handlers.agentDisconnected(msg.data);
    case "audioPlaybackChanged":
      return handlers.audioPlaybackChanged(msg.data);
    case "error":
      return handlers.error(msg.data);
    case "closed":
      return handlers.closed(msg.data);
  }
  msg satisfies never; // every event has its case
}

/** The iframe, configured and hidden, not yet in the document. */
function hiddenFrame(frameUrl: URL): HTMLIFrameElement {
  const el = document.createElement("iframe");
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
  return el;
}

function versionError(version: unknown): Error {
  return new Error(
    `AnyReach: the listen frame speaks protocol version ${String(version)}, ` +
      `this SDK speaks ${VERSION}. Reload the page to load matching versions.`,
  );
}

function notStartedError(frameUrl: URL): Error {
  return new Error(
    `AnyReach: the listen frame ${frameUrl.href} did not start. Check that the ` +
      `host is reachable and allows this page's origin (${location.origin}) to ` +
      "embed it (its EMBED_ORIGINS setting).",
  );
}

/** A hidden frame injected and shaking hands with the SDK, not yet any session's. */
export interface FrameStart {
  /** Resolves with the frame's port once its "ready" was answered; rejects if it never starts. */
  readonly port: Promise<MessagePort>;
  /** The handshake failed before the port opened: it never will. */
  failed(): boolean;
  /** Stops the handshake (failing `port` if still pending) and removes the iframe. */
  discard(error: Error): void;
}

/**
 * Inserts the hidden frame and runs the handshake with it. The port is kept, not
 * used: the frame sends nothing before a command, and whoever takes `port` (a
 * session's channel) starts it.
 */
export function startFrame(frameUrl: URL, origin: string): FrameStart {
  const el = hiddenFrame(frameUrl);
  let opened = false;
  let failed = false;
  let grace: ReturnType<typeof setTimeout> | undefined;
  let stop: (error?: Error) => void = () => {};
  const port = new Promise<MessagePort>((resolve, reject) => {
    const onMessage = (message: MessageEvent) => {
      // Source first, then shape, then origin.
      if (!el.contentWindow || message.source !== el.contentWindow) return;
      const msg: unknown = message.data;
      if (!isReady(msg)) return;
      if (message.origin !== origin || opened) return;
      if (msg.version !== VERSION) return stop(versionError(msg.version));
      const channel = new MessageChannel();
      opened = true;
      // The concrete origin, never "*": the port will carry the token.
      el.contentWindow.postMessage(handshake("init"), origin, [channel.port2]);
      stop();
      resolve(channel.port1);
    };
    const onLoad = () => {
      if (!opened && grace === undefined) {
        grace = setTimeout(() => stop(notStartedError(frameUrl)), FRAME_GRACE_MS);
      }
    };
    stop = (error) => {
      clearTimeout(grace);
      window.removeEventListener("message", onMessage);
      el.removeEventListener("load", onLoad);
      if (error && !opened) failed = true;
      if (error) reject(error);
    };
    window.addEventListener("message", onMessage);
    el.addEventListener("load", onLoad);
    (document.body || document.documentElement).appendChild(el);
  });
  port.catch(() => {});
  return {
    port,
    failed: () => failed,
    discard(error) {
      stop(error);
      // A port the handshake opened that nobody took: close our end too.
      if (opened) port.then((p) => p.close(), () => {});
      el.remove();
    },
  };
}

interface Pending {
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
}

/** The session's channel over `start` (a frame injected now, or the loader's spare). */
export function openFrameChannel(
  start: FrameStart,
  onEvent: (event: EventMessage) => void,
): FrameChannel {
  let port: MessagePort | null = null;
  let nextId = 1;
  let closed = false;
  const pending = new Map<number, Pending>();
  const ended = () => new Error("AnyReach: the session has ended.");

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

  const ready = start.port.then((opened) => {
    // Closed between the handshake and here: discard() closes the port.
    if (closed) throw ended();
    port = opened;
    port.onmessage = onPortMessage; // starts the port
  });
  ready.catch(() => {});

  return {
    ready,
    isOpen: () => port !== null,
    isDead: () => closed || start.failed(),
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
      if (closed) return;
      closed = true;
      for (const p of pending.values()) p.reject(ended());
      pending.clear();
      if (port) port.onmessage = null;
      port = null;
      start.discard(ended());
    },
  };
}
