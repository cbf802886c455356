// The supaplane console: a single-page app over the supaplane.v1 gRPC API.
import { render } from "preact";
import { useEffect } from "preact/hooks";
import { endSession, navigate, resumeSession, useAppState } from "./state.js";
import { homePath, parseRoute } from "./route.js";
import { AuthPage } from "./pages/auth.js";
import { ProjectsPage } from "./pages/projects.js";
import { ProjectPage } from "./pages/project.js";
import { AdminPage } from "./pages/admin.js";
import { NotFound } from "./pages/notfound.js";
import { Link } from "./ui.js";

function Header() {
  const st = useAppState();
  const s = st.session;
  return (
    <header class="top">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <span class="brand">supaplane</span>
      {s && (
        <nav aria-label="Main">
          <Link href="/projects">Projects</Link>
          {s.role === "admin" && <Link href="/admin">Admin</Link>}
        </nav>
      )}
      {s && (
        <span class="who">
          <span>{s.email}</span>
          <button type="button" onClick={() => endSession("You are logged out.")}>
            Log out
          </button>
        </span>
      )}
    </header>
  );
}

function Banner() {
  const st = useAppState();
  return (
    <div role="alert" aria-live="assertive" class="banner-slot">
      {st.apiDown && (
        <p class="banner" id="api-banner">
          The supaplane API cannot be reached. Retrying — this page recovers by itself when it is back.
        </p>
      )}
    </div>
  );
}

function App() {
  const st = useAppState();
  const route = parseRoute(st.path, location.hostname);
  const needsLogin = route.page !== "login" && route.page !== "signup" && !st.session;
  useEffect(() => {
    if (needsLogin) navigate("/login", true);
    else if (st.session && (route.page === "login" || route.page === "signup")) navigate(homePath(), true);
  }, [needsLogin, route.page, st.session]);
  useEffect(() => {
    // Move focus to the new page's heading so keyboard and screen reader users land there.
    (document.querySelector("main h1") as HTMLElement | null)?.focus();
    const h = document.querySelector("main h1")?.textContent;
    document.title = h ? `${h} · supaplane` : "supaplane";
  }, [st.path, route.page]);
  let page;
  if (needsLogin || route.page === "login") page = <AuthPage mode="login" />;
  else if (route.page === "signup") page = <AuthPage mode="signup" />;
  else if (route.page === "projects") page = <ProjectsPage />;
  else if (route.page === "project") page = <ProjectPage key={route.ref} ref_={route.ref} />;
  else if (route.page === "admin") page = <AdminPage />;
  else page = <NotFound />;
  return (
    <>
      <Header />
      <Banner />
      {page}
    </>
  );
}

resumeSession();
render(<App />, document.getElementById("app")!);
