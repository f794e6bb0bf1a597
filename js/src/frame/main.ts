// Production frame entry: the real LiveKit adapter and nothing else.
import { startFrame } from "./core";
import { createLiveKitAdapter } from "./livekit";

startFrame({ createAdapter: createLiveKitAdapter });
