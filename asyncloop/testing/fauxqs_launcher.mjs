// Starts fauxqs bound to one address, for asyncloop.testing.FauxqsServer.
//
// Usage: node fauxqs_launcher.mjs <fauxqs package dir> <host> <port>
//
// fauxqs's CLI (and its startFauxqs) listen on 0.0.0.0; this builds the same app through the
// package's `buildApp` export and listens on <host> only. Port 0 picks a free port. Once it
// listens, one JSON line goes to stdout: {"port": N}. It stops on SIGTERM, SIGINT, or when
// stdin closes, so a parent that dies without cleaning up does not leave it running.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [packageDir, host, portText] = process.argv.slice(2);
if (!packageDir || !host || portText === undefined) {
  process.stderr.write("usage: node fauxqs_launcher.mjs <fauxqs package dir> <host> <port>\n");
  process.exit(2);
}

// The package exports only an "import" condition, so require.resolve cannot find it:
// read its entry point from package.json.
const manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
const entry = manifest.exports?.["."]?.import?.default ?? manifest.main ?? "index.js";
const { buildApp } = await import(pathToFileURL(join(packageDir, entry)).href);

const app = buildApp({ logger: false });
await app.listen({ port: Number.parseInt(portText, 10), host });

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  try {
    await app.close();
  } finally {
    process.exit(0);
  }
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();

process.stdout.write(`${JSON.stringify({ port: app.server.address().port })}\n`);
