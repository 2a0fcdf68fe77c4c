// scripts/bench/wrk.ts: wrk's --latency output read into figures (a recorded output of wrk 4.1.0).
import assert from "assert/strict";
import { parseWrk } from "../../scripts/bench/wrk";

const OUTPUT = `Running 2s test @ http://127.0.0.1:41211/api/2.0/mlflow/runs/create
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    98.21ms   40.10ms 301.55ms   70.00%
    Req/Sec    40.12     10.33    60.00     70.00%
  Latency Distribution
     50%   91.40ms
     75%  120.00ms
     90%  150.10ms
     99%    1.20s
  161 requests in 2.01s, 80.50KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:     80.10
Transfer/sec:     40.05KB
`;

describe("bench: wrk's output", () => {
    it("gives requests, requests/s, p50 and p99 in ms, non-2xx answers and socket errors", () => {
        assert.deepEqual(parseWrk(OUTPUT), { requests: 161, requestsPerSec: 80.1, p50Ms: 91.4, p99Ms: 1200, non2xx: 4, errors: 3 });
    });
    it("reads microsecond latencies, and no error lines as zero", () => {
        const fast = OUTPUT.replace("91.40ms", "812.00us").replace(/ {2}Socket errors.*\n {2}Non-2xx.*\n/, "");
        assert.deepEqual(parseWrk(fast), { requests: 161, requestsPerSec: 80.1, p50Ms: 0.812, p99Ms: 1200, non2xx: 0, errors: 0 });
    });
    it("refuses output without the figures (wrk failed)", () => {
        assert.throws(() => parseWrk("unable to connect to 127.0.0.1:1 Connection refused"), /wrk printed no request count/);
    });
});
