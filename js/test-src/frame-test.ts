// TEST ONLY entry: the frame core with the fake adapter (see fake.ts).
import { startFrame } from "../src/frame/core";
import { installFake } from "./fake";

const { control, factory } = installFake();
(window as unknown as { __anyreachFake: unknown }).__anyreachFake = control;
startFrame({ createAdapter: factory, observe: (what) => control.ignored.push(what) });
