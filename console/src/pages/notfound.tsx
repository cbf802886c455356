import { Link } from "../ui.js";

export function NotFound(props: { what?: string }) {
  return (
    <main id="main" class="narrow">
      <h1 tabIndex={-1}>Not found</h1>
      <p id="not-found">{props.what ? `${props.what} does not exist, or is not yours.` : "There is no such page."}</p>
      <p>
        <Link href="/projects">Back to your projects</Link>
      </p>
    </main>
  );
}
