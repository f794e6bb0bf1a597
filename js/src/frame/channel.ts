// The frame's end of the channel: the handshake (say "ready" to the parent,
// accept one "init" from it, keep its port) and the port transport (commands in,
// replies and events out). It knows nothing of LiveKit or sessions.
import {
  type CommandEnvelope,
  type CommandHandlers,
  type CommandMessage,
  type EventMap,
  type EventName,
  event,
  handshake,
  isCommand,
  isCommandEnvelope,
  isInit,
  type ReplyMessage,
  VERSION,
} from "../protocol";
import { errorMessage } from "./errors";

export interface ParentChannel {
  /** The parent's origin, learned from the browser with its init ("" before). */
  origin(): string;
  /** Sends an event to the SDK (dropped before init: there is nobody to tell). */
  send<N extends EventName>(name: N, data: EventMap[N]): void;
  /** Starts the handshake; commands then run on these handlers. */
  listen(handlers: CommandHandlers): void;
}

/** Why a command envelope is refused (an unknown name or malformed arguments). */
function refusal(msg: CommandEnvelope): string {
  switch (msg.name) {
    case "connect":
      return "AnyReach: connect needs the url and token of the listener-token API.";
    case "setMuted":
      return "AnyReach: setMuted needs muted, a boolean.";
    default:
      return `AnyReach: unknown command ${JSON.stringify(msg.name)}.`;
  }
}

/** Runs one command. An explicit allow-list: nothing is looked up by name on any object. */
export function run(handlers: CommandHandlers, cmd: CommandMessage): Promise<unknown> {
  switch (cmd.name) {
    case "connect":
      return handlers.connect(cmd.args);
    case "disconnect":
      return handlers.disconnect(cmd.args);
    case "startAudio":
      return handlers.startAudio(cmd.args);
    case "setMuted":
      return handlers.setMuted(cmd.args);
  }
}

export function parentChannel(parentWindow: Window, observe: (what: string) => void): ParentChannel {
  let port: MessagePort | null = null;
  let parentOrigin = "";

  function reply(id: number, outcome: Promise<unknown>) {
    outcome.then(
      (result) => {
        // Replies carry a value only for commands that return one (none in version 1).
        const ok: ReplyMessage = { type: "reply", id, ok: true };
        if (result !== undefined) ok.result = result;
        port?.postMessage(ok);
      },
      (error: unknown) => {
        const failed: ReplyMessage = { type: "reply", id, ok: false, error: errorMessage(error) };
        port?.postMessage(failed);
      },
    );
  }

  return {
    origin: () => parentOrigin,
    send(name, data) {
      port?.postMessage(event(name, data));
    },
    listen(handlers) {
      const onCommand = (message: MessageEvent) => {
        const msg: unknown = message.data;
        if (!isCommandEnvelope(msg)) return observe("malformed command");
        reply(msg.id, isCommand(msg) ? run(handlers, msg) : Promise.reject(new Error(refusal(msg))));
      };
      const onWindowMessage = (message: MessageEvent) => {
        // Source first, then shape; the parent's origin is learned from the browser.
        if (message.source !== parentWindow) {
          return observe("message from a window other than the parent");
        }
        const msg: unknown = message.data;
        if (!isInit(msg) || message.ports.length !== 1) {
          return observe("malformed message from the parent");
        }
        if (port) return observe("second init");
        if (msg.version !== VERSION) {
          message.ports[0].postMessage(
            event("error", {
              message: `AnyReach: the SDK speaks protocol ${String(msg.version)}, the frame ${VERSION}.`,
            }),
          );
          return observe("version mismatch");
        }
        parentOrigin = message.origin;
        port = message.ports[0];
        port.onmessage = onCommand;
        observe("init");
      };
      window.addEventListener("message", onWindowMessage);
      parentWindow.postMessage(handshake("ready"), "*");
    },
  };
}
