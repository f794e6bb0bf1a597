// Builds the two production bundles into the Django app's static directory, the
// portal's takeover bundle into the portal's, and the test-only frame bundle into
// js/dist-test/ (outside anything that ships).
// `node build.mjs unit` instead compiles the unit tests (test/*.test.ts) for
// Node's built-in runner into js/dist-test/unit/; `node build.mjs bench` builds
// the benchmark's baselines (bench-src/) into js/dist-test/bench/; `node build.mjs
// shipped` builds only the two production bundles (the wheel's build hook, setup.py).
// The portal is no part of the wheel: `shipped` leaves its takeover bundle out.
import { readdirSync } from "node:fs";
import { build } from "esbuild";

const STATIC = "../anyreach_listen/static/anyreach_listen";
const PORTAL_STATIC = "../portal/static/portal";
const common = { bundle: true, format: "iife", logLevel: "warning", legalComments: "none" };
// The shipped bundles' settings: the bench builds its baselines with them too.
// Chromium's explicit compile hint: compile every function on the streaming
// thread while the file downloads (and keep them all in V8's code cache), not
// one by one on the main thread as they are first called: the frame runs most
// of livekit-client right away, to connect. Other browsers read a comment.
const shipped = {
  ...common,
  minify: true,
  target: "es2020",
  banner: { js: "//# allFunctionsCalledOnLoad" },
};

if (process.argv[2] === "unit") {
  await build({
    entryPoints: readdirSync("test")
      .filter((name) => name.endsWith(".test.ts"))
      .map((name) => `test/${name}`),
    outdir: "dist-test/unit",
    outExtension: { ".js": ".mjs" },
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "warning",
  });
} else if (process.argv[2] === "bench") {
  await Promise.all(
    ["direct", "livekit-only"].map((name) =>
      build({ ...shipped, entryPoints: [`bench-src/${name}.ts`], outfile: `dist-test/bench/${name}.js` }),
    ),
  );
} else {
  const bundles = [
    // The loader pages include: no livekit-client, as small as possible.
    build({ ...shipped, entryPoints: ["src/sdk.ts"], outfile: `${STATIC}/listen-sdk.js` }),
    // The hidden frame: the only code that imports livekit-client.
    build({ ...shipped, entryPoints: ["src/frame/main.ts"], outfile: `${STATIC}/listen-frame.js` }),
  ];
  if (process.argv[2] !== "shipped") {
    // The portal's "Take over": its own publishing connection (livekit-client), loaded
    // only by the portal pages that offer it.
    bundles.push(
      build({ ...shipped, entryPoints: ["src/portal/takeover.ts"], outfile: `${PORTAL_STATIC}/takeover.js` }),
    );
    // Test only: the frame with the scriptable fake adapter instead of LiveKit.
    bundles.push(
      build({ ...common, entryPoints: ["test-src/frame-test.ts"], outfile: "dist-test/listen-frame-test.js", target: "es2020" }),
    );
  }
  await Promise.all(bundles);
}
