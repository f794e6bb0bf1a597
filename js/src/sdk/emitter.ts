// The session's event emitter, generic over an event map (name -> payload).
// Pages call on()/off() from plain JavaScript, so names and handlers are checked
// at run time; a throwing handler never breaks the emitter or other handlers.

type Handler = (this: unknown, payload?: unknown) => void;
/** `ended`-style events (payload void) are emitted without an argument. */
type Payload<M, K extends keyof M> = [M[K]] extends [void] ? [] : [M[K]];

export interface Emitter<M> {
  /** Registers a handler (after seal(), only checks it). Throws a TypeError on misuse. */
  on(name: unknown, handler: unknown): void;
  off(name: unknown, handler: unknown): void;
  emit<K extends keyof M & string>(name: K, ...payload: Payload<M, K>): void;
  /** From now on on() only validates: the owner is going away. */
  seal(): void;
  /** Forgets every handler. */
  clear(): void;
}

/** `names` lists every event of M; handlers run with `this` = owner(). */
export function createEmitter<M>(names: readonly (keyof M & string)[], owner: () => unknown): Emitter<M> {
  const handlers = new Map<string, Set<Handler>>(names.map((name) => [name, new Set()]));
  let sealed = false;

  function check(name: unknown, handler: unknown): Set<Handler> {
    // A Map, not an object: inherited names such as "toString" are unknown events.
    const set = typeof name === "string" ? handlers.get(name) : undefined;
    if (!set) {
      throw new TypeError(
        `AnyReach: unknown event ${JSON.stringify(String(name))}; known events: ${names.join(", ")}.`,
      );
    }
    if (typeof handler !== "function") {
      throw new TypeError(`AnyReach: the handler for "${name as string}" must be a function.`);
    }
    return set;
  }

  return {
    on(name, handler) {
      const set = check(name, handler);
      if (!sealed) set.add(handler as Handler);
    },
    off(name, handler) {
      check(name, handler).delete(handler as Handler);
    },
    emit(name, ...payload) {
      for (const handler of [...(handlers.get(name) || [])]) {
        try {
          handler.call(owner(), payload[0]);
        } catch (error) {
          // Report the page's bug asynchronously, as an uncaught error, and carry on.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    },
    seal() {
      sealed = true;
    },
    clear() {
      handlers.forEach((set) => set.clear());
    },
  };
}
