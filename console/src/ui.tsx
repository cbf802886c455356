// Small shared pieces: links, copy buttons, secrets, confirm dialogs, times.
import { useEffect, useRef, useState } from "preact/hooks";
import type { ComponentChildren } from "preact";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { navigate } from "./state.js";

export function Link(props: { href: string; children: ComponentChildren; class?: string; tabIndex?: number }) {
  return (
    <a
      href={props.href}
      class={props.class}
      tabIndex={props.tabIndex}
      onClick={(e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

export function Time(props: { ts?: Timestamp }) {
  if (!props.ts) return <span>—</span>;
  const d = timestampDate(props.ts);
  return <time dateTime={d.toISOString()}>{d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z")}</time>;
}

export function CopyButton(props: { value: string; label: string }) {
  const [done, setDone] = useState("");
  return (
    <span class="copy">
      <button
        type="button"
        onClick={async () => {
          try {
            await navigator.clipboard.writeText(props.value);
            setDone("Copied");
          } catch {
            setDone("Copy failed: select the text and copy it");
          }
        }}
      >
        Copy {props.label}
      </button>
      <span role="status" class="muted">
        {done}
      </span>
    </span>
  );
}

/** A value shown at once (public) or behind a Reveal button (secret). */
export function KeyField(props: { id: string; label: string; value: string; secret?: boolean }) {
  const [shown, setShown] = useState(!props.secret);
  return (
    <div class="keyfield">
      <dt id={`${props.id}-label`}>{props.label}</dt>
      <dd>
        <span id={`${props.id}-value`}>
          {shown ? (
            <code id={props.id} aria-labelledby={`${props.id}-label`} class="secret">
              {props.value}
            </code>
          ) : (
            <span class="muted">hidden</span>
          )}
        </span>{" "}
        {props.secret && (
          <button type="button" aria-controls={`${props.id}-value`} aria-expanded={shown} onClick={() => setShown(!shown)}>
            {shown ? `Hide ${props.label}` : `Reveal ${props.label}`}
          </button>
        )}{" "}
        <CopyButton value={props.value} label={props.label} />
      </dd>
    </div>
  );
}

/**
 * A modal confirmation (the native <dialog>: focus is trapped, Escape
 * cancels). With `typeToConfirm`, the button works only once that text is typed.
 */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  body: ComponentChildren;
  confirmLabel: string;
  typeToConfirm?: string;
  danger?: boolean;
  onConfirm: () => void;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [typed, setTyped] = useState("");
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) {
      setTyped("");
      d.showModal();
    } else if (!props.open && d.open) d.close();
  }, [props.open]);
  const ok = props.typeToConfirm === undefined || typed === props.typeToConfirm;
  return (
    <dialog ref={ref} aria-labelledby="dialog-title" onClose={props.onClose}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          if (!ok) return;
          props.onConfirm();
          props.onClose();
        }}
      >
        <h2 id="dialog-title">{props.title}</h2>
        <div>{props.body}</div>
        {props.typeToConfirm !== undefined && (
          <p>
            <label for="confirm-text">
              Type <strong>{props.typeToConfirm}</strong> to confirm
            </label>
            <input
              id="confirm-text"
              autoComplete="off"
              value={typed}
              onInput={(e) => setTyped((e.target as HTMLInputElement).value)}
            />
          </p>
        )}
        <div class="row">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class={props.danger ? "danger" : "primary"} disabled={!ok}>
            {props.confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}

export function PhaseBadge(props: { phase: string }) {
  return <span class={`badge phase-${props.phase.toLowerCase()}`}>{props.phase}</span>;
}
