// Paged reads: every page of a listing as it arrives, and a tenant's history
// a page at a time. Pure (the calls are passed in): unit tested.

/** One page of a paged call: its items and the token of the next page ("" = none). */
export interface Page<T> {
  items: T[];
  next: string;
}

/**
 * Every page, each handed to `onPage` as soon as it arrives. The next page is
 * asked for before `onPage` runs, so rendering one page overlaps the call for
 * the next. Stops quietly (nothing more handed over) once `signal` aborts.
 */
export async function eachPage<T>(
  fetchPage: (token: string) => Promise<Page<T>>,
  onPage: (items: T[]) => void,
  signal: AbortSignal,
): Promise<void> {
  let page = await fetchPage("");
  for (;;) {
    const next = page.next ? fetchPage(page.next) : null;
    if (next) {
      next.catch(() => undefined); // awaited below; an abort must not surface as unhandled meanwhile
      // The call's first steps are microtasks, and so is the render that
      // onPage starts: one turn of the event loop lets the request go out first.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    if (signal.aborted) return; // e.g. logged out meanwhile: the page belongs to the old session
    onPage(page.items);
    if (!next) return;
    page = await next;
  }
}

/**
 * A tenant's history as far as it has been read, in stream order. `refresh`
 * reads the first page, and later (the tenant changed) only what came after
 * the last event held, once every earlier page is read; `more` reads the next
 * page. Calls run one at a time, in the order asked; after `close` nothing is
 * reported.
 */
export class HistoryReader<E extends { sequence: bigint }> {
  private events: E[] = [];
  private next = "";
  private started = false;
  private closed = false;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly fetchPage: (token: string) => Promise<Page<E>>,
    private readonly onChange: (events: E[], more: boolean) => void,
    private readonly onError: (e: unknown) => void,
  ) {}

  refresh(): Promise<void> {
    return this.run(async () => {
      if (!this.started) {
        const p = await this.fetchPage("");
        this.started = true;
        this.events = [];
        this.take(p);
      } else if (!this.next) {
        // The page token is the sequence of the last event read: what came
        // after it is everything new.
        const last = this.events[this.events.length - 1];
        this.take(await this.fetchPage(last ? String(last.sequence) : ""));
      }
      // else: newer events are behind the pages not read yet ("more").
    });
  }

  more(): Promise<void> {
    return this.run(async () => {
      if (this.started && this.next) this.take(await this.fetchPage(this.next));
    });
  }

  close(): void {
    this.closed = true;
  }

  private take(p: Page<E>): void {
    const last = this.events.length ? this.events[this.events.length - 1].sequence : -1n;
    const fresh = p.items.filter((e) => e.sequence > last);
    this.events = fresh.length ? [...this.events, ...fresh] : this.events;
    this.next = p.next;
    if (!this.closed) this.onChange(this.events, this.next !== "");
  }

  private run(step: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(step).catch((e) => {
      if (!this.closed) this.onError(e);
    });
    return this.queue;
  }
}
