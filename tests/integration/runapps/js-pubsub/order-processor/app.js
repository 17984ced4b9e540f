// The order processor of the pub/sub quickstart: subscribes to "orders" on
// "orderpubsub" and prints each order it gets.
const http = require("http");

const port = Number(process.env.APP_PORT || 5001);
const expected = Number(process.env.ORDERS || 5);
let seen = 0;

http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    if (req.method === "GET" && req.url === "/dapr/subscribe") {
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify([{ pubsubname: "orderpubsub", topic: "orders", route: "orders" }]));
      return;
    }
    if (req.method === "POST" && req.url === "/orders") {
      const event = JSON.parse(body);
      console.log("Subscriber received: " + JSON.stringify(event.data));
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ status: "SUCCESS" }));
      if (++seen === expected) console.log("all " + expected + " orders received");
      return;
    }
    res.statusCode = 404;
    res.end();
  });
}).listen(port, "127.0.0.1", () => console.log("order-processor listening on " + port));
