// Bundles the app (dist/public) and the server (dist/server/server.mjs, with
// @grpc/grpc-js inside: it runs with node alone, no node_modules).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = process.env.SUPAPLANE_CONSOLE_DIST || join(root, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "public"), { recursive: true });

await build({
  entryPoints: [join(root, "src", "main.tsx")],
  outfile: join(dist, "public", "app.js"),
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync(join(root, "public", "index.html"), join(dist, "public", "index.html"));
copyFileSync(join(root, "public", "style.css"), join(dist, "public", "style.css"));
copyFileSync(join(root, "public", "favicon.svg"), join(dist, "public", "favicon.svg"));

await build({
  entryPoints: [join(root, "server", "server.ts")],
  outfile: join(dist, "server", "server.mjs"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node18",
  logLevel: "warning",
  // @grpc/grpc-js is CommonJS: give the ESM bundle a require().
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});

const js = readFileSync(join(dist, "public", "app.js"));
const css = readFileSync(join(dist, "public", "style.css"));
const sizes = {
  app_js_bytes: js.length,
  app_js_gzip_bytes: gzipSync(js, { level: 9 }).length,
  style_css_gzip_bytes: gzipSync(css, { level: 9 }).length,
};
writeFileSync(join(dist, "sizes.json"), JSON.stringify(sizes, null, 2) + "\n");
console.log(`built dist/: app.js ${sizes.app_js_bytes} B (${sizes.app_js_gzip_bytes} B gzipped)`);
