// Sign up and log in: the API's messages are shown at the field they name.
import { useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { SessionResponse } from "../gen/supaplane/v1/api_pb.js";
import * as api from "../api.js";
import { handleError, navigate, startSession, useAppState } from "../state.js";
import { Link } from "../ui.js";
import { homePath } from "../route.js";

function toSession(r: SessionResponse) {
  return {
    token: r.token,
    expiresAtMs: r.expiresAt ? timestampMs(r.expiresAt) : Date.now() + 3600_000,
    accountId: r.account?.id ?? "",
    email: r.account?.email ?? "",
    role: r.account?.role ?? "customer",
  };
}

export function AuthPage(props: { mode: "login" | "signup" }) {
  const st = useAppState();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [err, setErr] = useState<{ field: string | null; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const signup = props.mode === "signup";
  const title = signup ? "Create your account" : "Log in to supaplane";

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const r = signup ? await api.accounts.signUp({ email, password }) : await api.accounts.login({ email, password });
      startSession(toSession(r));
      navigate(homePath(), true);
    } catch (x) {
      const d = handleError(x);
      setErr({ field: d.field, message: d.message });
    } finally {
      setBusy(false);
    }
  }
  const fieldErr = (f: string) =>
    err && err.field === f ? (
      <p class="field-error" id={`${f}-error`}>
        {err.message}
      </p>
    ) : null;
  return (
    <main id="main" class="narrow">
      <h1 tabIndex={-1}>{title}</h1>
      {st.notice && !signup && (
        <p role="alert" class="notice" id="login-notice">
          {st.notice}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <p>
          <label for="email">E-mail</label>
          <input
            id="email"
            type="email"
            autoComplete="username"
            value={email}
            aria-invalid={err?.field === "email"}
            aria-describedby={err?.field === "email" ? "email-error" : undefined}
            onInput={(e) => setEmail((e.target as HTMLInputElement).value)}
          />
        </p>
        {fieldErr("email")}
        <p>
          <label for="password">Password</label>
          <input
            id="password"
            type="password"
            autoComplete={signup ? "new-password" : "current-password"}
            value={password}
            aria-invalid={err?.field === "password"}
            aria-describedby={err?.field === "password" ? "password-error" : undefined}
            onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
          />
        </p>
        {fieldErr("password")}
        {err && !err.field && (
          <p role="alert" class="form-error" id="form-error">
            {err.message}
          </p>
        )}
        {err && err.field && (
          <p role="alert" class="sr-only">
            {err.message}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {signup ? "Sign up" : "Log in"}
        </button>
      </form>
      <p>
        {signup ? (
          <>
            Have an account? <Link href="/login">Log in</Link>
          </>
        ) : (
          <>
            New here? <Link href="/signup">Create an account</Link>
          </>
        )}
      </p>
    </main>
  );
}
