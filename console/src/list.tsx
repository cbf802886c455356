// The long tenant lists (projects, all tenants) as a windowed grid: only the
// rows near the viewport are in the DOM, placed at their offset in a body as
// tall as the whole list, so the page scrolls as if all were there. The
// arithmetic is in windowing.ts.
import { Component, type VNode } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Tenant } from "./gen/supaplane/v1/api_pb.js";
import { nextIndex, pageRows, rowsToDraw, scrollToReveal, visibleRange, type Range } from "./windowing.js";

/** Rows drawn above and below the viewport. */
const OVERSCAN = 6;
/** The row height style.css gives (2.5rem) until the first row is measured. */
const ROW_PX_GUESS = 40;

/** A row's cells; `tabIndex` goes on the row's one focusable element (its link). */
export type Cells = (t: Tenant, tabIndex: number) => VNode;

/**
 * One drawn row, drawn again only when its tenant, place or tab stop
 * changed: the live set keeps the same Tenant object for a tenant nothing
 * happened to, so a new page or a streamed change re-renders only the rows
 * it touched.
 */
class Row extends Component<{ t: Tenant; index: number; tab: boolean; h: number; cells: Cells }> {
  shouldComponentUpdate(n: Row["props"]): boolean {
    const p = this.props;
    return n.t !== p.t || n.index !== p.index || n.tab !== p.tab || n.h !== p.h;
  }
  render() {
    const { t, index, tab, h, cells } = this.props;
    return (
      <tr role="row" aria-rowindex={index + 2} data-ref={t.ref} style={{ top: `${index * h}px` }}>
        {cells(t, tab ? 0 : -1)}
      </tr>
    );
  }
}

/**
 * A grid (role="grid", aria-rowcount = rows + the header row, aria-rowindex
 * on each drawn row) with one Tab stop: the link of the keyboard's row.
 * Arrow keys, Page Up / Page Down, Home / End move the focus over every row
 * of the list; the page scrolls so the row is seen, and the window follows.
 */
export function WindowedTable(props: {
  id: string;
  label?: string;
  labelledBy?: string;
  columns: string[];
  rows: Tenant[];
  cells: Cells;
  busy?: boolean;
}) {
  const { rows } = props;
  const count = rows.length;
  const body = useRef<HTMLTableSectionElement>(null);
  const [h, setH] = useState(ROW_PX_GUESS);
  const [view, setView] = useState<Range & { first: number }>(() => ({
    ...visibleRange({ count, rowHeight: ROW_PX_GUESS, listTop: 0, viewportHeight: innerHeight, overscan: OVERSCAN }),
    first: 0,
  }));
  // The keyboard's row, by ref so that it stays on its tenant when rows
  // come, go or move.
  const [activeRef, setActiveRef] = useState("");
  const focusRef = useRef<string | null>(null);
  const latest = useRef({ count, h });
  latest.current = { count, h };

  // Measures where the list is and which rows are near the viewport; runs
  // after each render (before the frame is painted) and on scroll / resize.
  const measure = useRef(() => {
    const el = body.current;
    if (!el) return;
    let { count: n, h: rh } = latest.current;
    const first = el.firstElementChild as HTMLElement | null;
    if (first) {
      const got = first.getBoundingClientRect().height;
      if (got > 0 && Math.abs(got - rh) > 0.25) {
        rh = got;
        setH(got);
      }
    }
    const top = el.getBoundingClientRect().top;
    const r = visibleRange({ count: n, rowHeight: rh, listTop: top, viewportHeight: innerHeight, overscan: OVERSCAN });
    const firstSeen = Math.min(Math.max(0, Math.ceil(-top / rh)), Math.max(0, n - 1));
    setView((v) => (v.start === r.start && v.end === r.end && v.first === firstSeen ? v : { ...r, first: firstSeen }));
  }).current;

  useLayoutEffect(() => {
    measure();
    const ref = focusRef.current;
    if (ref !== null) {
      focusRef.current = null;
      body.current?.querySelector<HTMLElement>(`tr[data-ref="${ref}"] a`)?.focus({ preventScroll: true });
    }
  });
  useEffect(() => {
    addEventListener("scroll", measure, { passive: true });
    addEventListener("resize", measure, { passive: true });
    return () => {
      removeEventListener("scroll", measure);
      removeEventListener("resize", measure);
    };
  }, []);

  const active = activeRef ? rows.findIndex((t) => t.ref === activeRef) : -1;
  const tabStop = active >= 0 ? active : Math.min(view.first, count - 1);
  const start = Math.min(view.start, count);
  const drawn = rowsToDraw({ start, end: Math.min(view.end, count) }, tabStop, count);

  function onKeyDown(e: KeyboardEvent) {
    if (e.altKey || e.shiftKey || e.metaKey) return;
    const tr = (e.target as Element).closest("tr[aria-rowindex]");
    if (!tr || !body.current) return;
    const i = Number(tr.getAttribute("aria-rowindex")) - 2;
    const next = nextIndex(e.key, i, count, pageRows(h, innerHeight));
    if (next === null) return;
    e.preventDefault(); // the keys move the focus, not the page
    if (next === i) return;
    const dy = scrollToReveal(next, h, body.current.getBoundingClientRect().top, innerHeight);
    if (dy) scrollBy(0, dy);
    focusRef.current = rows[next].ref;
    setActiveRef(rows[next].ref);
  }
  function onFocusIn(e: FocusEvent) {
    const ref = (e.target as Element).closest("tr[data-ref]")?.getAttribute("data-ref");
    if (ref && ref !== activeRef) setActiveRef(ref);
  }

  return (
    <table
      id={props.id}
      role="grid"
      aria-label={props.label}
      aria-labelledby={props.labelledBy}
      aria-rowcount={count + 1}
      aria-colcount={props.columns.length}
      aria-busy={props.busy}
      class="list windowed"
    >
      <thead role="rowgroup">
        <tr role="row" aria-rowindex={1}>
          {props.columns.map((c) => (
            <th role="columnheader" scope="col" key={c}>
              {c}
            </th>
          ))}
        </tr>
      </thead>
      <tbody role="rowgroup" ref={body} style={{ height: `${count * h}px` }} onKeyDown={onKeyDown} onFocusIn={onFocusIn}>
        {drawn.map((i) => (
          <Row key={rows[i].ref} t={rows[i]} index={i} tab={i === tabStop} h={h} cells={props.cells} />
        ))}
      </tbody>
    </table>
  );
}
