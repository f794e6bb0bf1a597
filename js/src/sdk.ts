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
import { startFrame } from "./sdk/channel";
import { createSession } from "./sdk/session";
import { afterPageLoad, spareSlot } from "./sdk/spare";

// Read while the script runs: the SDK's own URL tells which host to frame.
const script =
  (document.currentScript as HTMLScriptElement | null) ||
  document.querySelector<HTMLScriptElement>('script[src*="/listen-sdk"]');
const scriptSrc = script?.src;

/** The frame page, /public/listen next to the SDK, and its origin. */
function frameTarget(src: string): { frameUrl: URL; origin: string } {
  const frameUrl = new URL(src);
  frameUrl.pathname = frameUrl.pathname.replace(/-sdk\/?$/, "");
  frameUrl.search = frameUrl.hash = "";
  return { frameUrl, origin: frameUrl.origin };
}

const target = scriptSrc ? frameTarget(scriptSrc) : null;

// One frame prewarmed after page load, for the first listen() (spare.ts), unless
// the page's script tag says data-prewarm="off".
const spare = target ? spareSlot(() => startFrame(target.frameUrl, target.origin)) : null;
if (spare && script?.getAttribute("data-prewarm") !== "off") afterPageLoad(spare.fill);

function listen(options: ListenOptions): ListenSession {
  // Pages are plain JavaScript: check what they really passed.
  const { url, token } = (isDict(options) ? options : {}) as Dict;
  if (typeof url !== "string" || !url || typeof token !== "string" || !token) {
    throw new TypeError(
      "AnyReach.listen({ url, token }) needs the url and token strings returned by " +
        "POST /core/conversations/{id}/listener-token (mint them from your backend).",
    );
  }
  if (!target) {
    throw new Error(
      "AnyReach: cannot tell which host served the SDK; load it with a <script src> tag.",
    );
  }
  return createSession({ url, token, ...target }, spare?.take() ?? null);
}

// Keep whatever else a page (or another script) put on window.AnyReach.
const w = window as unknown as { AnyReach?: Partial<AnyReachSdk> };
if (!isDict(w.AnyReach)) w.AnyReach = {};
w.AnyReach.listen = listen satisfies AnyReachSdk["listen"];
