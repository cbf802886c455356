// Generates the TypeScript client (messages + service descriptors) from
// ../proto with the system's protoc and @bufbuild/protoc-gen-es. Output goes
// to src/gen/ (not committed): the proto files are the only source.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const protoDir = join(root, "..", "proto");
const out = join(root, "src", "gen");
const plugin = join(root, "node_modules", ".bin", "protoc-gen-es");

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const files = readdirSync(join(protoDir, "supaplane", "v1"))
  .filter((f) => f.endsWith(".proto"))
  .map((f) => `supaplane/v1/${f}`);
try {
  execFileSync(
    "protoc",
    [`--plugin=protoc-gen-es=${plugin}`, `--es_out=${out}`, "--es_opt=target=ts",
      `-I${protoDir}`, "-I/usr/include", ...files],
    { stdio: "inherit" },
  );
} catch (e) {
  console.error("protoc failed: are protobuf-compiler and libprotobuf-dev (google/protobuf/*.proto) installed?");
  process.exit(1);
}
console.log(`generated ${files.join(", ")} into src/gen`);
