// The arithmetic of a windowed list: which rows of a long list of fixed-height
// rows are near the viewport, where a key moves the focus, and how far to
// scroll so a row is seen. Pure (no DOM): unit tested.

/** Rows [start, end) of the list. */
export interface Range {
  start: number;
  end: number;
}

export interface Viewport {
  /** Rows in the list. */
  count: number;
  /** Height of one row, px (> 0). */
  rowHeight: number;
  /**
   * Top of the list's first row relative to the top of the viewport, px
   * (a list scrolled past has a negative top; one below the fold a top larger
   * than the viewport).
   */
  listTop: number;
  /** Height of the viewport, px. */
  viewportHeight: number;
  /** Rows drawn beyond each edge of the viewport, so a short scroll shows drawn rows. */
  overscan: number;
}

/**
 * The rows that intersect the viewport, widened by `overscan` rows on each
 * side and clamped to the list. A list wholly below the viewport still gets
 * its first rows (so Tab reaches them at once), one wholly above it its last
 * rows.
 */
export function visibleRange(v: Viewport): Range {
  if (v.count <= 0) return { start: 0, end: 0 };
  const h = v.rowHeight > 0 ? v.rowHeight : 1;
  const first = Math.floor(-v.listTop / h);
  const last = Math.ceil((v.viewportHeight - v.listTop) / h); // exclusive
  const start = clamp(Math.min(first, v.count - 1) - v.overscan, 0, v.count);
  const end = clamp(Math.max(last, 1) + v.overscan, start, v.count);
  return { start, end };
}

/** Rows that fit the viewport whole: the step of Page Up / Page Down (at least 1). */
export function pageRows(rowHeight: number, viewportHeight: number): number {
  return Math.max(1, Math.floor(viewportHeight / (rowHeight > 0 ? rowHeight : 1)) - 1);
}

/**
 * Where focus goes from row `index` of `count` on `key` (a KeyboardEvent.key),
 * or null for a key the list does not handle: arrows by one row, Page Up /
 * Page Down by `page` rows, Home / End to the first / last row (one focusable
 * element per row, so with or without Ctrl).
 */
export function nextIndex(key: string, index: number, count: number, page: number): number | null {
  if (count <= 0) return null;
  const last = count - 1;
  const i = clamp(index, 0, last);
  switch (key) {
    case "ArrowDown":
      return Math.min(last, i + 1);
    case "ArrowUp":
      return Math.max(0, i - 1);
    case "PageDown":
      return Math.min(last, i + page);
    case "PageUp":
      return Math.max(0, i - page);
    case "Home":
      return 0;
    case "End":
      return last;
    default:
      return null;
  }
}

/**
 * How far to scroll (px, positive = down) so that row `index` is wholly in
 * the viewport: 0 when it is already, else the least scroll that shows it.
 */
export function scrollToReveal(index: number, rowHeight: number, listTop: number, viewportHeight: number): number {
  const top = listTop + index * rowHeight;
  const bottom = top + rowHeight;
  if (top < 0) return top;
  if (bottom > viewportHeight) return Math.min(top, bottom - viewportHeight);
  return 0;
}

/**
 * The rows to draw: the range, plus row `keep` (the keyboard's row) when it
 * lies outside, so the focused element is never taken out of the page.
 */
export function rowsToDraw(range: Range, keep: number, count: number): number[] {
  const out: number[] = [];
  const extra = keep >= 0 && keep < count && (keep < range.start || keep >= range.end);
  if (extra && keep < range.start) out.push(keep);
  for (let i = range.start; i < range.end; i++) out.push(i);
  if (extra && keep >= range.end) out.push(keep);
  return out;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
