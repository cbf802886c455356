// Where a URL points inside the console. Pure: unit tested.
export type Route =
  | { page: "login" }
  | { page: "signup" }
  | { page: "projects" }
  | { page: "project"; ref: string }
  | { page: "admin" }
  | { page: "notfound" };

const REF = /^[a-z]{20}$/;

/** `<ref>.<base-domain>` → ref (the first label of a tenant's host). */
export function refFromHost(hostname: string): string | null {
  const first = hostname.split(".")[0];
  return hostname.includes(".") && REF.test(first) ? first : null;
}

export function parseRoute(pathname: string, hostname: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/") {
    const ref = refFromHost(hostname);
    return ref ? { page: "project", ref } : { page: "projects" };
  }
  if (path === "/login") return { page: "login" };
  if (path === "/signup") return { page: "signup" };
  if (path === "/projects") return { page: "projects" };
  if (path === "/admin") return { page: "admin" };
  const m = /^\/projects\/([^/]+)$/.exec(path);
  if (m && REF.test(m[1])) return { page: "project", ref: m[1] };
  return { page: "notfound" };
}

export function projectPath(ref: string): string {
  return `/projects/${ref}`;
}

/** Where a logged-in user lands: on `<ref>.<base-domain>` that project's page, else the list. */
export function homePath(hostname: string = location.hostname): string {
  return refFromHost(hostname) ? "/" : "/projects";
}
