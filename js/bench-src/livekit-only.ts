// BENCH ONLY: livekit-client alone, bundled with the frame's esbuild settings,
// the yardstick for the frame bundle's size (bench/bench_sdk.py, B6).
import "livekit-client";
