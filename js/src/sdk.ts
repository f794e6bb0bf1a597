// The loader a page includes with <script src="https://HOST/public/listen-sdk">.
// It must stay small and free of livekit-client: it only brokers a hidden frame.
import { type Dict, isDict, isEnvelope, PROTOCOL, VERSION } from "./protocol";

type State = "idle" | "connecting" | "connected" | "disconnected";
type Handler = (payload?: unknown) => void;
interface Pending {
  resolve: () => void;
  reject: (error: Error) => void;
}
interface Connecting extends Pending {
  promise: Promise<void>;
  timer: ReturnType<typeof setTimeout>;
}

const EVENTS = [
  "stateChange",
  "transcript",
  "agentDisconnected",
  "error",
  "ended",
  "audioPlaybackChanged",
];
const CONNECT_TIMEOUT_MS = 15000;
const END_TIMEOUT_MS = 3000;
// After the iframe's load event, how long a missing "ready" may take before we
// conclude the browser refused to run the frame (frame-ancestors, 404, offline).
const FRAME_GRACE_MS = 2000;

const scriptSrc = (
  (document.currentScript as HTMLScriptElement | null) ||
  document.querySelector<HTMLScriptElement>('script[src*="/listen-sdk"]')
)?.src;

function listen(this: unknown, options: { url: string; token: string }) {
  const { url, token } = (isDict(options) ? options : {}) as Dict;
  if (typeof url !== "string" || !url || typeof token !== "string" || !token) {
    throw new TypeError(
      "AnyReach.listen({ url, token }) needs the url and token strings returned by " +
        "POST /core/conversations/{id}/listener-token (mint them from your backend).",
    );
  }
  if (!scriptSrc) {
    throw new Error(
      "AnyReach: cannot tell which host served the SDK; load it with a <script src> tag.",
    );
  }
  const origin = new URL(scriptSrc).origin;
  const frameUrl = new URL(scriptSrc);
  frameUrl.pathname = frameUrl.pathname.replace(/-sdk\/?$/, "");
  frameUrl.search = frameUrl.hash = "";

  let state: State = "idle";
  let muted = false;
  let ended = false;
  let iframe: HTMLIFrameElement | null = null;
  let port: MessagePort | null = null;
  let frame: Promise<MessagePort> | null = null;
  let connecting: Connecting | null = null;
  let ending: Promise<void> | null = null;
  let nextId = 1;
  const handlers = new Map<string, Set<Handler>>(EVENTS.map((name) => [name, new Set()]));
  const pending = new Map<number, Pending>();
  const cleanups: (() => void)[] = [];
  const ignore = () => {};

  function emit(name: string, payload?: unknown) {
    for (const handler of [...(handlers.get(name) || [])]) {
      try {
        handler.call(session, payload);
      } catch (error) {
        // A page's handler must never break the session: report it, asynchronously.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  function setState(next: State) {
    if (next !== state) {
      state = next;
      emit("stateChange", next);
    }
  }

  function fail(message: string) {
    if (ended) return;
    const c = connecting;
    if (c) {
      connecting = null;
      clearTimeout(c.timer);
      setState("disconnected");
      if (port) command("disconnect").catch(ignore);
    }
    emit("error", { message });
    if (c) c.reject(new Error(message));
  }

  function command(name: string, args: Dict = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!port) return reject(new Error("AnyReach: the listen frame is not connected."));
      const id = nextId++;
      pending.set(id, { resolve, reject });
      port.postMessage({ type: "command", id, name, args });
    });
  }

  function onPortMessage(event: MessageEvent) {
    const msg = event.data;
    if (!isDict(msg)) return;
    if (msg.type === "reply" && typeof msg.id === "number") {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (p && msg.ok === true) p.resolve();
      else if (p) p.reject(new Error(String(msg.error || "AnyReach: the listen frame failed.")));
      return;
    }
    if (msg.type !== "event" || ended) return;
    const data = isDict(msg.data) ? msg.data : {};
    switch (msg.name) {
      case "state":
        if (data.state === "connecting" || data.state === "connected") setState(data.state);
        else if (data.state === "disconnected") setState("disconnected");
        break;
      case "transcript":
        if (
          typeof data.id === "string" &&
          (data.role === "agent" || data.role === "user") &&
          typeof data.text === "string" &&
          typeof data.final === "boolean"
        ) {
          emit("transcript", { id: data.id, role: data.role, text: data.text, final: data.final });
        }
        break;
      case "agentDisconnected":
        if (typeof data.participantIdentity === "string") {
          emit("agentDisconnected", { participantIdentity: data.participantIdentity });
        }
        break;
      case "audioPlaybackChanged":
        if (typeof data.playing === "boolean") emit("audioPlaybackChanged", { playing: data.playing });
        break;
      case "error":
        fail(String(data.message || "AnyReach: the listen frame failed."));
        break;
      case "closed":
        // The room went away for good: report why (when it is a failure), then tear down.
        if (typeof data.message === "string") fail(data.message);
        setState("disconnected");
        end().catch(ignore);
        break;
    }
  }

  function openFrame(): Promise<MessagePort> {
    if (frame) return frame;
    frame = new Promise<MessagePort>((resolve, reject) => {
      const el = document.createElement("iframe");
      let grace: ReturnType<typeof setTimeout> | undefined;
      const onMessage = (event: MessageEvent) => {
        // Source first, then shape, then origin.
        if (!el.contentWindow || event.source !== el.contentWindow) return;
        const msg = event.data;
        if (!isEnvelope(msg, "ready")) return;
        if (event.origin !== origin || port) return;
        if (msg.version !== VERSION) {
          return done(
            new Error(
              `AnyReach: the listen frame speaks protocol version ${String(msg.version)}, ` +
                `this SDK speaks ${VERSION}. Reload the page to load matching versions.`,
            ),
          );
        }
        const channel = new MessageChannel();
        port = channel.port1;
        port.onmessage = onPortMessage;
        el.contentWindow.postMessage({ protocol: PROTOCOL, version: VERSION, type: "init" }, origin, [
          channel.port2,
        ]);
        done();
        resolve(port);
      };
      const onLoad = () => {
        if (!port && grace === undefined) {
          grace = setTimeout(
            () =>
              done(
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
      const done = (error?: Error) => {
        clearTimeout(grace);
        window.removeEventListener("message", onMessage);
        el.removeEventListener("load", onLoad);
        if (error) reject(error);
      };
      window.addEventListener("message", onMessage);
      el.addEventListener("load", onLoad);
      cleanups.push(() => done(new Error("AnyReach: the session has ended.")));
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
      iframe = el;
      (document.body || document.documentElement).appendChild(el);
    });
    frame.catch(ignore);
    return frame;
  }

  function connect(): Promise<void> {
    if (ended) {
      return Promise.reject(
        new Error("AnyReach: this session has ended; create a new one with AnyReach.listen()."),
      );
    }
    if (connecting) return connecting.promise;
    if (state === "connected") return Promise.resolve();
    const c = {} as Connecting;
    c.promise = new Promise<void>((resolve, reject) => {
      c.resolve = resolve;
      c.reject = reject;
    });
    c.timer = setTimeout(
      () =>
        fail(
          "AnyReach: timed out after 15 s connecting to the live conversation. Check that it is " +
            `still in progress and that this network can reach ${url}, then call connect() again.`,
        ),
      CONNECT_TIMEOUT_MS,
    );
    connecting = c;
    setState("connecting");
    openFrame()
      .then(() => {
        // Timed out or ended while the frame loaded: never send the token late.
        if (connecting !== c) throw new Error("superseded");
        return command("connect", { url, token, muted });
      })
      .then(
        () => {
          if (connecting !== c) return;
          connecting = null;
          clearTimeout(c.timer);
          setState("connected");
          c.resolve();
        },
        (error: Error) => {
          if (connecting === c) fail(error.message);
        },
      );
    return c.promise;
  }

  function startAudio(): Promise<void> {
    if (ended) return Promise.reject(new Error("AnyReach: this session has ended."));
    if (!frame) return Promise.resolve();
    return frame
      .then(() => command("startAudio"))
      .catch((error: Error) => {
        fail(error.message);
        throw error;
      });
  }

  function setMuted(value: boolean) {
    muted = value;
    if (port && !ended) command("setMuted", { muted }).catch(ignore);
  }

  function end(): Promise<void> {
    if (!ending) ending = teardown();
    return ending;
  }

  async function teardown() {
    ended = true;
    const c = connecting;
    connecting = null;
    if (c) {
      clearTimeout(c.timer);
      c.reject(new Error("AnyReach: the session was ended before it connected."));
    }
    if (port) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        command("disconnect").catch(ignore),
        new Promise((resolve) => (timer = setTimeout(resolve, END_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
    }
    for (const cleanup of cleanups.splice(0)) cleanup();
    for (const p of pending.values()) p.reject(new Error("AnyReach: the session has ended."));
    pending.clear();
    if (port) {
      port.onmessage = null;
      port.close();
      port = null;
    }
    iframe?.remove();
    iframe = null;
    setState("disconnected");
    emit("ended");
    handlers.forEach((set) => set.clear());
  }

  function checkEvent(name: unknown, handler: unknown): Set<Handler> {
    const set = typeof name === "string" ? handlers.get(name) : undefined;
    if (!set) {
      throw new TypeError(
        `AnyReach: unknown event ${JSON.stringify(String(name))}; known events: ${EVENTS.join(", ")}.`,
      );
    }
    if (typeof handler !== "function") {
      throw new TypeError(`AnyReach: the handler for "${name as string}" must be a function.`);
    }
    return set;
  }

  const session = Object.freeze({
    connect,
    startAudio,
    mute: () => setMuted(true),
    unmute: () => setMuted(false),
    isMuted: () => muted,
    getState: () => state,
    end,
    on(name: string, handler: Handler) {
      if (!ended) checkEvent(name, handler).add(handler);
      else checkEvent(name, handler);
      return session;
    },
    off(name: string, handler: Handler) {
      checkEvent(name, handler).delete(handler);
      return session;
    },
  });
  return session;
}

const w = window as unknown as { AnyReach?: Dict };
if (!isDict(w.AnyReach)) w.AnyReach = {};
w.AnyReach.listen = listen;
