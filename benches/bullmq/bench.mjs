// BullMQ with no-op jobs, for comparison with cardrun's `queue` bench on the
// same Redis: time to queue 1,000 jobs (addBulk, median of 10), jobs/s
// processed by one Worker (concurrency 16, the same as cardrun's bench
// tasks), and jobs/s added in bulk.
//
//   npm ci && node bench.mjs redis://127.0.0.1:6379 [JOBS]
import { Queue, Worker } from 'bullmq';

const url = new URL(process.argv[2] ?? 'redis://127.0.0.1:6379');
const jobs = Number(process.argv[3] ?? 50000);
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const name = `bench-${Date.now()}`;
const queue = new Queue(name, { connection });
const payload = (i) => ({ name: 'noop', data: { n: i, prompt: `item ${i}` }, opts: { removeOnComplete: true } });

const samples = [];
for (let r = 0; r < 10; r++) {
  const t = process.hrtime.bigint();
  await queue.addBulk(Array.from({ length: 1000 }, (_, i) => payload(i)));
  samples.push(Number(process.hrtime.bigint() - t) / 1e6);
}
samples.sort((a, b) => a - b);
await queue.obliterate({ force: true });

const addStart = process.hrtime.bigint();
for (let i = 0; i < jobs; i += 1000) {
  await queue.addBulk(Array.from({ length: Math.min(1000, jobs - i) }, (_, k) => payload(i + k)));
}
const addSeconds = Number(process.hrtime.bigint() - addStart) / 1e9;

let done = 0;
const start = process.hrtime.bigint();
const finished = new Promise((resolve) => {
  const worker = new Worker(name, async () => {}, { connection, concurrency: 16 });
  worker.on('completed', () => {
    if (++done === jobs) resolve(worker);
  });
});
const worker = await finished;
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`bullmq   queue 1,000: ${samples[4].toFixed(2)} ms   added ${(jobs / addSeconds).toFixed(0)} jobs/s   processed ${(jobs / seconds).toFixed(0)} jobs/s`);
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
