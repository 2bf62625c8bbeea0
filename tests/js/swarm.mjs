// Many Socket.IO clients in one Node process, for the Socket.IO bench.
//
//   node swarm.mjs URL CLIENTS
//   stdout: {"ready": N} once every client is connected
//   stdin:  {"subscribe": "<execution id>"}  every client subscribes
//   stdout: {"subscribed": N} once every ack came back, then at
//           execution-complete on every client:
//           {"done": {"clients": N, "tests_per_client": [min, median, max],
//                     "received": {"<prompt>": [first_ms, last_ms]}, "disconnects": n,
//                     "cpu_seconds": Node's CPU time}}
// Times are epoch milliseconds with microsecond fractions.
import { io } from 'socket.io-client';
import readline from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';

// How late Node's own event loop ran: a floor under the latency it reports.
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

const [, , url, count = '1'] = process.argv;
const n = Number(count);
const now = () => performance.timeOrigin + performance.now();
const clients = [];
const received = new Map();
let connected = 0; let completed = 0; let disconnects = 0;

for (let i = 0; i < n; i++) {
  const socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true, timeout: 60000 });
  const client = { socket, tests: 0 };
  clients.push(client);
  socket.on('connect', () => { if (++connected === n) console.log(JSON.stringify({ ready: n })); });
  socket.on('connect_error', (e) => { console.log(JSON.stringify({ connect_error: e.message, client: i })); process.exit(3); });
  socket.on('disconnect', () => { disconnects++; });
  socket.on('test-complete', (r) => {
    const t = now();
    client.tests++;
    const seen = received.get(r.prompt);
    if (seen) { seen[0] = Math.min(seen[0], t); seen[1] = Math.max(seen[1], t); } else received.set(r.prompt, [t, t]);
  });
  socket.on('execution-complete', () => { if (++completed === n) finish(); });
}

function finish() {
  const counts = clients.map((c) => c.tests).sort((a, b) => a - b);
  console.log(JSON.stringify({ done: {
    clients: n,
    tests_per_client: [counts[0], counts[Math.floor(counts.length / 2)], counts[counts.length - 1]],
    received: Object.fromEntries(received),
    disconnects,
    cpu_seconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    event_loop_delay_ms: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
  } }));
  for (const c of clients) c.socket.close();
  process.exit(0);
}

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const { subscribe } = JSON.parse(line);
  await Promise.all(clients.map((c) => c.socket.timeout(60000).emitWithAck('subscribe-test', subscribe)));
  console.log(JSON.stringify({ subscribed: n }));
});
