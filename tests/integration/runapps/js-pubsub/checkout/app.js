// The checkout of the pub/sub quickstart: publishes orders 1, 2, ... to
// "orders" on "orderpubsub" through Dapr's HTTP API, one every 100 ms, until
// it is stopped (Ctrl-C), as the quickstart's loop does.
const base = "http://127.0.0.1:" + process.env.DAPR_HTTP_PORT;

async function main() {
  for (let i = 1; i <= 600; i++) {
    const order = { orderId: i };
    const r = await fetch(base + "/v1.0/publish/orderpubsub/orders", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(order),
    });
    if (r.status !== 204) throw new Error("publish answered " + r.status + ": " + (await r.text()));
    console.log("Published data: " + JSON.stringify(order) + " (" + process.env.QUICKSTART + ")");
    // and keeps the last order, as the state quickstart does
    const s = await fetch(base + "/v1.0/state/statestore", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify([{ key: "last-order", value: order }]),
    });
    if (s.status !== 204) throw new Error("save state answered " + s.status + ": " + (await s.text()));
    await new Promise((ok) => setTimeout(ok, 100));
  }
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
