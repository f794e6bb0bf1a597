// The loader a page includes with <script src="https://HOST/public/listen-sdk">.
// It must stay small and free of livekit-client: it only brokers a hidden frame.
// The page-facing types are the published declarations (listen-sdk.d.ts): tsc
// checks this implementation against them.
import type {
  AnyReachSdk,
  ListenOptions,
  ListenSession,
} from "../../anyreach_listen/static/anyreach_listen/listen-sdk";
import { type Dict, isDict } from "./protocol";
import { createSession } from "./sdk/session";

// Read while the script runs: the SDK's own URL tells which host to frame.
const scriptSrc = (
  (document.currentScript as HTMLScriptElement | null) ||
  document.querySelector<HTMLScriptElement>('script[src*="/listen-sdk"]')
)?.src;

function listen(options: ListenOptions): ListenSession {
  // Pages are plain JavaScript: check what they really passed.
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
  const frameUrl = new URL(scriptSrc);
  frameUrl.pathname = frameUrl.pathname.replace(/-sdk\/?$/, "");
  frameUrl.search = frameUrl.hash = "";
  return createSession({ url, token, frameUrl, origin: frameUrl.origin });
}

// Keep whatever else a page (or another script) put on window.AnyReach.
const w = window as unknown as { AnyReach?: Partial<AnyReachSdk> };
if (!isDict(w.AnyReach)) w.AnyReach = {};
w.AnyReach.listen = listen satisfies AnyReachSdk["listen"];
