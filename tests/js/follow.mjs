// Follows executions with the reference Socket.IO client, driven by the
// Rust test through stdin (one JSON command per line) and reporting on
// stdout (one JSON object per line).
//
//   node follow.mjs URL [websocket|polling]
//   stdin:  {"subscribe": "<execution id>"}   subscribe with an ack
//           {"expect": N}                      finish after N execution-complete events
//   stdout: {"ready": true, ...} once connected, then {"done": ...} at the end
import { io } from 'socket.io-client';
import readline from 'node:readline';

const [, , url, transport = 'websocket', timeoutMs = '60000'] = process.argv;
const socket = io(url, { transports: [transport], reconnection: false, timeout: 10000 });
const seen = { acks: [], confirmed: [], progress: [], tests: [], complete: [], errors: [], disconnect: null };
let expected = 1;

function finish(code) {
  console.log(JSON.stringify({ done: seen, code }));
  socket.close();
  process.exit(code);
}

socket.on('connect', () => {
  console.log(JSON.stringify({ ready: true, transport: socket.io.engine.transport.name }));
});
socket.on('connect_error', (e) => {
  console.log(JSON.stringify({ connect_error: e.message }));
  process.exit(3);
});
socket.on('disconnect', (reason) => { seen.disconnect = reason; });
socket.on('subscription-confirmed', (d) => seen.confirmed.push(d));
socket.on('progress', (p) => seen.progress.push({ execution_id: p.execution_id, percent: p.percent, status: p.status }));
socket.on('test-complete', (r) => seen.tests.push({ execution_id: r.execution_id, test_case_id: r.test_case_id, status: r.status }));
socket.on('execution-complete', (c) => {
  seen.complete.push(c);
  if (seen.complete.length >= expected) finish(0);
});
socket.on('error', (e) => seen.errors.push(e));

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const command = JSON.parse(line);
  if (command.expect !== undefined) expected = command.expect;
  if (command.subscribe !== undefined) {
    try {
      seen.acks.push(await socket.timeout(5000).emitWithAck('subscribe-test', command.subscribe));
    } catch (e) {
      seen.acks.push({ timeout: e.message });
    }
    console.log(JSON.stringify({ subscribed: command.subscribe }));
  }
});

setTimeout(() => finish(2), Number(timeoutMs));
