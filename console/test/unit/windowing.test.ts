import { describe, it } from "node:test";
import { expect } from "./expect.js";
import { nextIndex, pageRows, rowsToDraw, scrollToReveal, visibleRange, type Viewport } from "../../src/windowing.js";

const v = (p: Partial<Viewport>): Viewport => ({ count: 1000, rowHeight: 40, listTop: 0, viewportHeight: 900, overscan: 0, ...p });

describe("visibleRange", () => {
  it("is the rows that intersect the viewport", () => {
    // Rows 0..22 cover 0..920 px: row 22 is cut by the bottom edge, still drawn.
    expect(visibleRange(v({}))).toEqual({ start: 0, end: 23 });
    // A list starting 300 px down: 600 px of it show, rows 0..14.
    expect(visibleRange(v({ listTop: 300 }))).toEqual({ start: 0, end: 15 });
    // Scrolled 1,000 px into the list: rows 25 (its top at the edge) .. 47 (880..920 px).
    expect(visibleRange(v({ listTop: -1000 }))).toEqual({ start: 25, end: 48 });
    // A row cut by the top edge is drawn: -1,010 px puts row 25 at -10..30 px.
    expect(visibleRange(v({ listTop: -1010 }))).toEqual({ start: 25, end: 48 });
  });
  it("widens by the overscan on each side, within the list", () => {
    expect(visibleRange(v({ listTop: -1000, overscan: 10 }))).toEqual({ start: 15, end: 58 });
    expect(visibleRange(v({ overscan: 10 }))).toEqual({ start: 0, end: 33 });
    // The end of the list: 1,000 rows are 40,000 px; the last screen.
    expect(visibleRange(v({ listTop: -(40_000 - 900), overscan: 10 }))).toEqual({ start: 967, end: 1000 });
  });
  it("keeps a few rows of a list wholly below or above the viewport", () => {
    expect(visibleRange(v({ listTop: 2000, overscan: 10 }))).toEqual({ start: 0, end: 11 });
    expect(visibleRange(v({ listTop: -100_000, overscan: 10 }))).toEqual({ start: 989, end: 1000 });
  });
  it("draws every row of a short list and none of an empty one", () => {
    expect(visibleRange(v({ count: 3, overscan: 10 }))).toEqual({ start: 0, end: 3 });
    expect(visibleRange(v({ count: 0, overscan: 10 }))).toEqual({ start: 0, end: 0 });
  });
  it("draws a window, not the list: tens of rows of 1,000 wherever it is scrolled", () => {
    for (let top = 1000; top >= -41_000; top -= 337) {
      const r = visibleRange(v({ listTop: top, overscan: 10 }));
      expect(r.end - r.start <= 44).toBe(true);
      expect(r.start >= 0 && r.end <= 1000 && r.start <= r.end).toBe(true);
    }
  });
});

describe("nextIndex", () => {
  it("moves by one row, a page, or to either end, within the list", () => {
    expect(nextIndex("ArrowDown", 4, 1000, 21)).toBe(5);
    expect(nextIndex("ArrowUp", 4, 1000, 21)).toBe(3);
    expect(nextIndex("PageDown", 4, 1000, 21)).toBe(25);
    expect(nextIndex("PageUp", 25, 1000, 21)).toBe(4);
    expect(nextIndex("Home", 500, 1000, 21)).toBe(0);
    expect(nextIndex("End", 5, 1000, 21)).toBe(999);
    expect(nextIndex("ArrowUp", 0, 1000, 21)).toBe(0);
    expect(nextIndex("ArrowDown", 999, 1000, 21)).toBe(999);
    expect(nextIndex("PageDown", 990, 1000, 21)).toBe(999);
    expect(nextIndex("PageUp", 10, 1000, 21)).toBe(0);
  });
  it("leaves other keys alone, and an empty list", () => {
    expect(nextIndex("Enter", 4, 1000, 21)).toBeNull();
    expect(nextIndex("Tab", 4, 1000, 21)).toBeNull();
    expect(nextIndex("ArrowDown", 0, 0, 21)).toBeNull();
  });
  it("starts from a row the list no longer has (it shrank) at its end", () => {
    expect(nextIndex("ArrowUp", 50, 10, 21)).toBe(8);
  });
});

describe("pageRows", () => {
  it("is the rows that fit whole, less one kept for context, at least 1", () => {
    expect(pageRows(40, 900)).toBe(21);
    expect(pageRows(40, 30)).toBe(1);
  });
});

describe("scrollToReveal", () => {
  it("is 0 for a row wholly in view", () => {
    expect(scrollToReveal(0, 40, 0, 900)).toBe(0);
    expect(scrollToReveal(21, 40, 0, 900)).toBe(0); // 840..880
  });
  it("scrolls down just enough for a row below, up for a row above", () => {
    expect(scrollToReveal(22, 40, 0, 900)).toBe(20); // 880..920 → 860..900
    expect(scrollToReveal(999, 40, 300, 900)).toBe(300 + 40_000 - 900);
    expect(scrollToReveal(10, 40, -1000, 900)).toBe(-600); // its top is 600 px above the edge
  });
  it("shows the top of a row taller than the viewport", () => {
    expect(scrollToReveal(1, 1000, 0, 900)).toBe(1000);
  });
});

describe("rowsToDraw", () => {
  it("is the range, with the keyboard's row added where it lies outside", () => {
    expect(rowsToDraw({ start: 5, end: 8 }, 6, 100)).toEqual([5, 6, 7]);
    expect(rowsToDraw({ start: 5, end: 8 }, 2, 100)).toEqual([2, 5, 6, 7]);
    expect(rowsToDraw({ start: 5, end: 8 }, 50, 100)).toEqual([5, 6, 7, 50]);
    expect(rowsToDraw({ start: 5, end: 8 }, -1, 100)).toEqual([5, 6, 7]);
    expect(rowsToDraw({ start: 0, end: 0 }, 3, 2)).toEqual([]);
  });
});
