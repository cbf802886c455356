import { describe, it } from "node:test";
import { expect } from "./expect.js";
import { eachPage, HistoryReader, type Page } from "../../src/paging.js";

/** A paged call over `items`, `size` a page; the token is the last item's position (as the api's). */
function pager(items: number[], size: number) {
  const asked: string[] = [];
  const fetchPage = async (token: string): Promise<Page<number>> => {
    asked.push(token);
    const from = token ? Number(token) : 0;
    const page = items.slice(from, from + size);
    return { items: page, next: from + size < items.length ? String(from + size) : "" };
  };
  return { asked, fetchPage };
}

describe("eachPage", () => {
  it("hands over each page as it arrives, after asking for the next one", async () => {
    const p = pager([1, 2, 3, 4, 5], 2);
    const seen: { items: number[]; askedSoFar: number }[] = [];
    await eachPage(p.fetchPage, (items) => seen.push({ items, askedSoFar: p.asked.length }), new AbortController().signal);
    expect(seen).toEqual([
      { items: [1, 2], askedSoFar: 2 }, // page 2 already asked for while page 1 renders
      { items: [3, 4], askedSoFar: 3 },
      { items: [5], askedSoFar: 3 },
    ]);
    expect(p.asked).toEqual(["", "2", "4"]);
  });
  it("hands nothing over once aborted", async () => {
    const p = pager([1, 2, 3, 4], 2);
    const stop = new AbortController();
    const seen: number[][] = [];
    await eachPage(
      async (t) => {
        const r = await p.fetchPage(t);
        if (t === "") stop.abort(); // e.g. logged out while the first page was on its way
        return r;
      },
      (items) => seen.push(items),
      stop.signal,
    );
    expect(seen).toEqual([]);
  });
});

interface Ev {
  sequence: bigint;
}
const evs = (...seqs: number[]): Ev[] => seqs.map((s) => ({ sequence: BigInt(s) }));

/** A tenant's history that grows: the api's ListTenantEvents paging over it. */
function history(size: number) {
  const log: Ev[] = [];
  const asked: string[] = [];
  const fetchPage = async (token: string): Promise<Page<Ev>> => {
    asked.push(token);
    const after = token ? BigInt(token) : 0n;
    const rest = log.filter((e) => e.sequence > after);
    const page = rest.slice(0, size);
    return { items: page, next: rest.length > size ? String(page[page.length - 1].sequence) : "" };
  };
  return { log, asked, fetchPage };
}

function reader(h: ReturnType<typeof history>) {
  const view = { seqs: [] as number[], more: false, changes: 0, errors: [] as unknown[] };
  const r = new HistoryReader<Ev>(
    h.fetchPage,
    (events, more) => {
      view.seqs = events.map((e) => Number(e.sequence));
      view.more = more;
      view.changes++;
    },
    (e) => view.errors.push(e),
  );
  return { r, view };
}

describe("HistoryReader", () => {
  it("reads the first page, then each next page on request, to the end", async () => {
    const h = history(3);
    h.log.push(...evs(1, 2, 3, 4, 5, 6, 7));
    const { r, view } = reader(h);
    await r.refresh();
    expect(view).toEqual({ seqs: [1, 2, 3], more: true, changes: 1, errors: [] });
    await r.more();
    await r.more();
    expect(view.seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(view.more).toBe(false);
    await r.more(); // nothing left: no call
    expect(h.asked).toEqual(["", "3", "6"]);
  });
  it("after a change, reads only what came after the last event, once every page is read", async () => {
    const h = history(3);
    h.log.push(...evs(1, 2));
    const { r, view } = reader(h);
    await r.refresh();
    h.log.push(...evs(5, 8));
    await r.refresh();
    expect(view.seqs).toEqual([1, 2, 5, 8]);
    expect(h.asked).toEqual(["", "2"]);
    await r.refresh(); // nothing new: the same events
    expect(view.seqs).toEqual([1, 2, 5, 8]);
  });
  it("leaves newer events behind the pages not read yet", async () => {
    const h = history(2);
    h.log.push(...evs(1, 2, 3));
    const { r, view } = reader(h);
    await r.refresh();
    h.log.push(...evs(4));
    await r.refresh();
    expect(view.seqs).toEqual([1, 2]);
    expect(h.asked).toEqual([""]);
    await r.more();
    await r.more();
    expect(view.seqs).toEqual([1, 2, 3, 4]);
    expect(view.more).toBe(false);
  });
  it("runs calls one at a time and never holds an event twice", async () => {
    const h = history(2);
    h.log.push(...evs(1, 2, 3));
    const { r, view } = reader(h);
    // Asked for all at once (a change and a click while the first page loads).
    await Promise.all([r.refresh(), r.more(), r.refresh(), r.more()]);
    expect(view.seqs).toEqual([1, 2, 3]);
    expect(h.asked).toEqual(["", "2", "3"]);
  });
  it("a failed first read is retried by the next refresh; nothing is reported after close", async () => {
    const h = history(2);
    h.log.push(...evs(1));
    let fail = true;
    const { r, view } = reader({
      ...h,
      fetchPage: (t) => (fail ? Promise.reject(new Error("unavailable")) : h.fetchPage(t)),
    });
    await r.refresh();
    expect(view.errors.length).toBe(1);
    expect(view.changes).toBe(0);
    fail = false;
    await r.refresh();
    expect(view.seqs).toEqual([1]);
    r.close();
    h.log.push(...evs(2));
    await r.refresh();
    expect(view.seqs).toEqual([1]);
  });
});
