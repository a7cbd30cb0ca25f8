// Short-connection rate: HTTP GETs, each on a new TCP connection, CONCURRENCY at a time, for
// SECONDS; prints requests per second. Usage: node conn-rate.mjs PORT [SECONDS] [CONCURRENCY]
import http from "node:http";
const [port, seconds = "5", concurrency = "8"] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: false });
const end = Date.now() + Number(seconds) * 1000;
let done = 0;
let failed = 0;
function one() {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port: Number(port), path: "/index.html", agent }, (res) => {
      res.resume();
      res.on("end", () => { done++; resolve(); });
    });
    req.on("error", () => { failed++; resolve(); });
  });
}
async function worker() { while (Date.now() < end) await one(); }
const start = Date.now();
await Promise.all(Array.from({ length: Number(concurrency) }, worker));
const rate = done / ((Date.now() - start) / 1000);
console.log(JSON.stringify({ rate: Math.round(rate), done, failed }));
