// The few node:test and node:assert declarations the unit tests use. Written
// out here instead of adding @types/node, whose globals (Buffer, NodeJS.Timeout
// for setTimeout, ...) would leak into the browser sources' type check.
declare module "node:test" {
  export function test(name: string, fn: () => void | Promise<void>): Promise<void>;
  export function describe(name: string, fn: () => void): void;
  export const mock: {
    timers: {
      enable(options: { apis: "setTimeout"[] }): void;
      tick(ms: number): void;
      reset(): void;
    };
  };
}

declare module "node:assert/strict" {
  interface Assert {
    equal(actual: unknown, expected: unknown, message?: string): void;
    deepEqual(actual: unknown, expected: unknown, message?: string): void;
    ok(value: unknown, message?: string): asserts value;
    match(value: string, pattern: RegExp, message?: string): void;
    throws(fn: () => unknown, expected?: RegExp | { name?: string; message?: string | RegExp }): void;
  }
  const assert: Assert;
  export default assert;
}
