// Remote actors between processes: a real bulwarkd publishes its gateway over CAF's network
// layer (BASP on loopback) and this test process, another CAF node, queries it.

#include "messages/fwd.hpp"
#include "runtime/remote_client.hpp"
#include "support/client_node.hpp"
#include "support/node_process.hpp"
#include "support/pki.hpp"
#include "support/threads.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <catch2/catch.hpp>

#include <fstream>
#include <future>
#include <regex>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// The shipped demo on SQLite, published on a free loopback port.
json node_config_json() {
  std::ifstream in{std::string{BULWARK_SOURCE_DIR} + "/config/default.json"};
  auto cfg = json::parse(in);
  json out = {{"backend", cfg["backend"]},
              {"statements", cfg["statements"]},
              {"remote", {{"listen", "127.0.0.1:0"}, {"plain", true}}}};
  // About a second of work in SQLite, to have a request in flight on purpose.
  out["statements"]["slow"] = {
      {"sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "
              "SELECT count(*) FROM c"},
      {"params", json::array()},
      {"read_only", true}};
  return out;
}

uint16_t remote_port_of(test::node_process& n) {
  std::smatch m;
  auto out = n.proc->output();
  REQUIRE(std::regex_search(out, m,
                            std::regex{"published to remote nodes on 127.0.0.1 port ([0-9]+)"}));
  return static_cast<uint16_t>(std::stoi(m[1]));
}

using test::client_node;

/// add_event's parameters for event `id` (config/default.json's demo).
std::vector<db_value> event(int64_t id) {
  return {db_value::of(id), db_value::of(int64_t{1}), db_value::of(std::string{"buy"}),
          db_value::of(2.5)};
}

gateway_request request(std::string statement, std::vector<db_value> params,
                        std::string client = {}) {
  gateway_request r;
  r.client = std::move(client);
  r.query.statement = std::move(statement);
  r.query.params = std::move(params);
  return r;
}

} // namespace

TEST_CASE("another CAF node queries the gateway a bulwarkd publishes", "[remote][integration]") {
  test::node_process n{node_config_json()};
  auto port = remote_port_of(n);
  client_node client;
  auto gw = client.sys->middleman().remote_actor<remote_gateway_actor>("127.0.0.1", port);
  INFO((gw ? std::string{} : client.sys->render(gw.error())));
  REQUIRE(gw);

  auto r = client.query(*gw, request("user_by_id", {db_value::of(int64_t{1})}));
  INFO((r ? std::string{} : client.sys->render(r.error())));
  REQUIRE(r);
  REQUIRE(r->rows.size() == 1);
  CHECK(r->columns.at(0) == "id");
  CHECK(r->rows[0][0].integer == 1);
  // The second read of a cached statement comes from the node's cache, as over HTTP.
  auto again = client.query(*gw, request("user_by_id", {db_value::of(int64_t{1})}));
  REQUIRE(again);
  CHECK(again->from_cache);

  // Errors cross the network as errors of the `bulwark` category, with their codes.
  auto unknown = client.query(*gw, request("no_such_statement", {}));
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().category() == errc_category);
  CHECK(unknown.error().code() == static_cast<uint8_t>(errc::unknown_statement));

  // The published handle outlives a gateway restart: it looks the gateway up per request.
  REQUIRE(n.admin_post("/admin/v1/crash/gateway%2F0").status == 202);
  n.wait_status([](const json& s) {
    for (auto& c : s["components"])
      if (c["name"] == "gateway/0")
        return c["restarts"] == 1 && c["state"] == "running";
    return false;
  });
  auto after = client.query(*gw, request("user_by_id", {db_value::of(int64_t{2})}));
  INFO((after ? std::string{} : client.sys->render(after.error())));
  REQUIRE(after);
  CHECK(after->rows.at(0)[0].integer == 2);
  // Remote requests are accounted like HTTP ones: one outcome each.
  auto metrics = test::http_get(n.port, "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("bulwark_requests_total{outcome=\"served\"} 2"));
  CHECK_THAT(metrics, Catch::Contains("bulwark_requests_total{outcome=\"served_cached\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("bulwark_requests_total{outcome=\"unknown_statement\"} 1"));
}

TEST_CASE("another CAF node runs a transaction through the gateway a bulwarkd publishes",
          "[remote][transaction][integration]") {
  auto cfg = node_config_json();
  std::ifstream in{std::string{BULWARK_SOURCE_DIR} + "/config/default.json"};
  cfg["transactions"] = json::parse(in)["transactions"]; // record_event: add_event, event_totals
  test::node_process n{cfg};
  auto port = remote_port_of(n);
  client_node client;
  auto gw = client.sys->middleman().remote_actor<remote_gateway_actor>("127.0.0.1", port);
  REQUIRE(gw);

  // Ad hoc: two steps travel in the request; both answers come back, in order.
  gateway_request tx;
  tx.query.statement = transaction_label;
  tx.query.steps = {{"add_event", event(900001)}, {"user_by_id", {db_value::of(int64_t{1})}}};
  auto r = client.query(*gw, tx);
  INFO((r ? std::string{} : client.sys->render(r.error())));
  REQUIRE(r);
  REQUIRE(r->steps.size() == 2);
  CHECK(r->steps[0].rows_affected == 1);
  CHECK(r->steps[1].rows.at(0).at(1).text == "Ada Lovelace");

  // A failing step crosses the network as the step's own error, naming the step.
  gateway_request dup;
  dup.query.statement = transaction_label;
  dup.query.steps = {{"add_event", event(900002)}, {"add_event", event(900001)}};
  auto d = client.query(*gw, dup);
  REQUIRE_FALSE(d);
  CHECK(d.error().code() == static_cast<uint8_t>(errc::conflict));
  auto step = failed_step_of(d.error());
  REQUIRE(step);
  CHECK(step->index == 1);
  CHECK(step->statement == "add_event");

  // Declared: the node holds the caller to the declared steps.
  gateway_request declared;
  declared.query.statement = declared_transaction_label("record_event");
  declared.query.steps = {{"add_event", event(900003)}, {"event_totals", {}}};
  auto ok = client.query(*gw, declared);
  INFO((ok ? std::string{} : client.sys->render(ok.error())));
  REQUIRE(ok);
  CHECK(ok->steps.size() == 2);
  auto forged = declared;
  forged.query.steps = {{"add_event", event(900004)}};
  auto f = client.query(*gw, forged);
  REQUIRE_FALSE(f);
  CHECK(f.error().code() == static_cast<uint8_t>(errc::bad_parameters));

  auto metrics = test::http_get(n.port, "/metrics").body;
  CHECK_THAT(metrics,
             Catch::Contains("bulwark_database_transactions_total{name=\"record_event\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("bulwark_requests_total{outcome=\"conflict\"} 1"));
  auto redo = client.query(*gw, dup); // now 900002 is free and 900001 still taken: same answer
  REQUIRE_FALSE(redo);
  CHECK(failed_step_of(redo.error())->index == 1);
  // 900002 was rolled back with the failed transaction: it can be written now.
  gateway_request only_second;
  only_second.query.statement = transaction_label;
  only_second.query.steps = {{"add_event", event(900002)}};
  CHECK(client.query(*gw, only_second));
}

TEST_CASE("another CAF node runs a batch through the gateway a bulwarkd publishes",
          "[remote][batch][integration]") {
  test::node_process n{node_config_json()};
  client_node client;
  auto gw = client.connect(remote_port_of(n));
  REQUIRE(gw);
  // Items run concurrently, each its own statement: a conflict is with a row already there.
  gateway_request batch;
  batch.query.statement = "add_event";
  batch.query.batch = {event(910001), event(910002)};
  auto first = client.query(*gw, batch);
  INFO((first ? std::string{} : client.sys->render(first.error())));
  REQUIRE(first);
  CHECK(first->rows_affected == 2);
  // Collect: every item's answer or error crosses the network, in order.
  batch.query.batch = {event(910003), event(910001)};
  batch.query.collect = true;
  auto r = client.query(*gw, batch);
  INFO((r ? std::string{} : client.sys->render(r.error())));
  REQUIRE(r);
  REQUIRE(r->items.size() == 2);
  CHECK_FALSE(r->items[0].error);
  CHECK(r->items[0].result.rows_affected == 1);
  REQUIRE(r->items[1].error);
  CHECK(r->items[1].error.code() == static_cast<uint8_t>(errc::conflict));
  CHECK(r->rows_affected == 1);
  // Fail fast: the error names the item and the items that ran.
  batch.query.collect = false;
  batch.query.batch = {event(910004), event(910002)};
  auto f = client.query(*gw, batch);
  REQUIRE_FALSE(f);
  CHECK(f.error().code() == static_cast<uint8_t>(errc::conflict));
  auto item = failed_item_of(f.error());
  REQUIRE(item);
  CHECK(item->index == 1);
  CHECK(item->succeeded == std::vector<uint32_t>{0});
  // A remote caller cannot send more than the node allows.
  batch.query.batch.assign(101, event(920000));
  auto big = client.query(*gw, batch);
  REQUIRE_FALSE(big);
  CHECK(big.error().code() == static_cast<uint8_t>(errc::bad_parameters));
  auto metrics = test::http_get(n.port, "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("bulwark_database_batches_total{statement=\"add_event\"} 3"));
}

TEST_CASE("nodes speak mutual TLS: a peer with a certificate from the node's CA is served, any "
          "other is refused in the handshake",
          "[remote][tls][integration]") {
  test::temp_dir tmp;
  test::pki pki{tmp.path / "pki"};
  auto cfg = node_config_json();
  cfg["remote"] = {
      {"listen", "127.0.0.1:0"},
      {"tls",
       {{"certificate", pki.cert("node")}, {"key", pki.key("node")}, {"ca", pki.cert("ca")}}}};
  test::node_process n{cfg};
  auto port = remote_port_of(n);
  CHECK_THAT(n.proc->output(), Catch::Contains("(mutual TLS)"));
  client_node client{{pki.cert("client"), pki.key("client"), pki.cert("ca")}};
  auto gw = client.connect(port);
  INFO((gw ? std::string{} : client.sys->render(gw.error())));
  REQUIRE(gw);
  auto r = client.query(*gw, request("user_by_id", {db_value::of(int64_t{1})}));
  REQUIRE(r);
  CHECK(r->rows.at(0)[0].integer == 1);
  // A certificate from another CA, or no TLS: refused before any message.
  client_node intruder{{pki.cert("intruder"), pki.key("intruder"), pki.cert("ca")}};
  CHECK_FALSE(intruder.connect(port));
  client_node plain;
  CHECK_FALSE(plain.connect(port));
  // The client that trusts another CA refuses the node in turn.
  client_node doubtful{{pki.cert("client"), pki.key("client"), pki.cert("rogue_ca")}};
  CHECK_FALSE(doubtful.connect(port));
  // The refusals cost the node nothing: the first client is still served.
  auto again = client.query(*gw, request("user_by_id", {db_value::of(int64_t{2})}));
  INFO((again ? std::string{} : client.sys->render(again.error())));
  INFO(n.proc->output());
  REQUIRE(again);
  CHECK(again->rows.at(0)[0].integer == 2);
  auto metrics = test::http_get(n.port, "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("bulwark_requests_total{outcome=\"served\"} 2"));
}

TEST_CASE("a remote.listen that cannot be published stops the node with a clear error",
          "[remote][integration]") {
  test::node_process first{node_config_json()};
  auto port = remote_port_of(first);
  auto cfg = node_config_json();
  cfg["remote"]["listen"] = "127.0.0.1:" + std::to_string(port); // taken by the first node
  test::temp_dir tmp;
  cfg["node"] = {{"data_dir", (tmp.path / "data").string()}};
  cfg["http"] = {{"listen", "127.0.0.1:0"}};
  cfg["admin"] = {{"listen", ""}};
  auto file = tmp.put("taken.json", cfg.dump());
  // `timeout`: should the bind ever succeed, the node would run for ever instead of failing.
  auto [rc, out] =
      test::run_command("timeout 30 " + std::string{BULWARKD_PATH} + " --config " + file + " 2>&1");
  CHECK(rc == 2);
  CHECK_THAT(out, Catch::Contains("remote.listen: cannot publish the gateway on 127.0.0.1:" +
                                  std::to_string(port)));
}

TEST_CASE("a remote request in flight when the gateway dies is answered at once, not timed out",
          "[remote][integration]") {
  test::node_process n{node_config_json()};
  auto port = remote_port_of(n);
  client_node client;
  auto gw = client.sys->middleman().remote_actor<remote_gateway_actor>("127.0.0.1", port);
  REQUIRE(gw);
  caf::expected<db_result> answer = caf::make_error(caf::sec::request_timeout);
  test::thread_group caller;
  caller.spawn([&] { answer = client.query(*gw, request("slow", {})); });
  // Crash the gateway once the query is in the database (the gateway is waiting on it).
  auto until = std::chrono::steady_clock::now() + 10s;
  while (test::http_get(n.port, "/metrics")
                 .body.find("bulwark_database_queries_total{statement=\"slow\"} 1") ==
             std::string::npos &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  // Every gateway shard (the request is in the one its node's key hashes to).
  int crashed = 0;
  auto status = n.status();
  for (auto& c : status["components"]) {
    auto name = c["name"].get<std::string>();
    if (name.rfind("gateway/", 0) == 0) {
      REQUIRE(n.admin_post("/admin/v1/crash/gateway%2F" + name.substr(8)).status == 202);
      ++crashed;
    }
  }
  REQUIRE(crashed >= 1);
  caller.join();
  // The front saw the gateway go: component_unavailable, not CAF's request_timeout 8 s later.
  REQUIRE_FALSE(answer);
  CHECK(answer.error().category() == errc_category);
  CHECK(answer.error().code() == static_cast<uint8_t>(errc::component_unavailable));
  CHECK_THAT(test::http_get(n.port, "/metrics").body,
             Catch::Contains("bulwark_requests_total{outcome=\"rejected_unavailable\"} 1"));
}

namespace {

/// A bulwarkd publishing over mutual TLS (the shipped remote.* otherwise) and a client node set
/// up with configure_remote and the client's certificate, as an application would be.
struct tls_pair {
  test::temp_dir tmp;
  test::pki pki{tmp.path / "pki"};
  std::unique_ptr<test::node_process> node;
  uint16_t port = 0;
  remote_config client_remote;
  caf::actor_system_config client_cfg;
  std::unique_ptr<caf::actor_system> client;

  explicit tls_pair(json extra = json::object()) {
    auto cfg = node_config_json();
    cfg.merge_patch(extra);
    cfg["remote"] = {
        {"listen", "127.0.0.1:0"},
        {"tls",
         {{"certificate", pki.cert("node")}, {"key", pki.key("node")}, {"ca", pki.cert("ca")}}}};
    node = std::make_unique<test::node_process>(cfg);
    port = remote_port_of(*node);
    client_remote.tls = {pki.cert("client"), pki.key("client"), pki.cert("ca")};
    configure_remote(client_cfg, client_remote);
    client_cfg.set("logger.console", caf::atom("none"));
    client = std::make_unique<caf::actor_system>(client_cfg);
  }

  /// Sends `req` through `caller` from an actor of its own; the answer comes in the future.
  std::future<caf::expected<db_result>> send(const remote_caller_actor& caller,
                                             gateway_request req) {
    auto p = std::make_shared<std::promise<caf::expected<db_result>>>();
    auto fut = p->get_future();
    client->spawn([=](caf::event_based_actor* self) {
      self->request(caller, 60s, req)
          .then([=](db_result& r) { p->set_value(std::move(r)); },
                [=](caf::error& e) { p->set_value(std::move(e)); });
    });
    return fut;
  }

  /// Waits until the node has `n` requests in flight (its own books say so).
  void wait_in_flight(double n) {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (test::metric(node->port, "bulwark_requests_in_flight") != n) {
      if (std::chrono::steady_clock::now() > until)
        FAIL("the node never had " << n << " requests in flight");
      std::this_thread::sleep_for(5ms);
    }
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

TEST_CASE("a node killed mid-request fails its remote caller at once, and every later request",
          "[remote][tls][faults][integration]") {
  tls_pair t;
  auto caller = connect_remote(*t.client, t.client_remote, "127.0.0.1", t.port);
  INFO((caller ? std::string{} : t.client->render(caller.error())));
  REQUIRE(caller);
  auto ok = t.send(*caller, request("user_by_id", {db_value::of(int64_t{1})})).get();
  REQUIRE(ok);
  auto slow = t.send(*caller, request("slow", {}));
  t.wait_in_flight(1);
  auto t0 = std::chrono::steady_clock::now();
  t.node->proc->signal(SIGKILL);
  REQUIRE(slow.wait_for(10s) == std::future_status::ready);
  auto r = slow.get();
  auto took = seconds_since(t0);
  INFO("answered " << took << " s after the kill");
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::backend_unavailable));
  CHECK(took < 1.0); // the kernel closes the socket: no timeout is waited for
  // The caller ended with the node: a later request fails at once too.
  auto t1 = std::chrono::steady_clock::now();
  auto later = t.send(*caller, request("user_by_id", {db_value::of(int64_t{1})})).get();
  REQUIRE_FALSE(later);
  INFO(t.client->render(later.error()));
  CHECK(later.error() == caf::sec::request_receiver_down);
  CHECK(seconds_since(t1) < 1.0);
}

TEST_CASE("a node that vanishes silently fails its remote caller within the peer timeout",
          "[remote][tls][faults][integration]") {
  tls_pair t;
  auto caller = connect_remote(*t.client, t.client_remote, "127.0.0.1", t.port);
  REQUIRE(caller);
  REQUIRE(t.send(*caller, request("user_by_id", {db_value::of(int64_t{1})})).get());
  auto slow = t.send(*caller, request("slow", {}));
  t.wait_in_flight(1);
  // Stopped, not killed: the connection stays open and nothing comes over it, as with a
  // machine that dropped off the network. Only the missing heartbeats tell.
  auto t0 = std::chrono::steady_clock::now();
  t.node->proc->signal(SIGSTOP);
  auto stated = std::chrono::duration<double>(t.client_remote.peer_timeout +
                                              t.client_remote.heartbeat_interval)
                    .count();
  REQUIRE(slow.wait_for(30s) == std::future_status::ready);
  auto r = slow.get();
  auto took = seconds_since(t0);
  t.node->proc->signal(SIGCONT);
  INFO("answered " << took << " s after the node stopped; stated: " << stated << " s");
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::backend_unavailable));
  CHECK(took <= stated + 0.5);
  CHECK(took >= 0.5 * t.client_remote.peer_timeout.count() / 1000.0); // the heartbeats decided
}

TEST_CASE("SIGTERM drains remote requests: those pending are served, new ones refused",
          "[remote][tls][integration]") {
  // The scenario's change: room for the slow request (about a second, more on a loaded
  // machine) to finish within its deadline and the drain.
  tls_pair t{{{"database", {{"default_timeout_ms", 30000}}},
              {"breaker", {{"call_timeout_ms", 30000}}},
              {"shutdown", {{"drain_ms", 30000}}}}};
  auto caller = connect_remote(*t.client, t.client_remote, "127.0.0.1", t.port);
  REQUIRE(caller);
  auto long_request = request("slow", {});
  long_request.timeout = 30s;
  auto slow = t.send(*caller, long_request);
  t.wait_in_flight(1);
  t.node->proc->signal(SIGTERM);
  t.node->proc->wait_output("shutting down", 10s);
  auto late = t.send(*caller, request("user_by_id", {db_value::of(int64_t{1})})).get();
  REQUIRE_FALSE(late);
  CHECK(is(late.error(), errc::shutting_down));
  auto r = slow.get();
  INFO((r ? std::string{} : t.client->render(r.error())));
  REQUIRE(r); // served, not cut off
  CHECK(r->rows.at(0).at(0).integer == 20000000);
  CHECK(t.node->proc->wait(40s) == 0);
}

TEST_CASE("a remote caller is rate limited as its node, whatever client it names, unless trusted",
          "[remote][rate_limiter][integration]") {
  for (bool trust : {false, true}) {
    auto cfg = node_config_json();
    // The scenario's change: a burst of 3 that does not refill within the test (and batches no
    // larger than it, as the config check requires).
    cfg["rate_limiter"] = {{"burst", 3}, {"rate_per_sec", 0.001}};
    cfg["database"] = {{"max_batch_items", 3}};
    cfg["remote"]["trust_client"] = trust;
    test::node_process n{cfg};
    client_node client;
    auto gw = client.connect(remote_port_of(n));
    REQUIRE(gw);
    int served = 0;
    int limited = 0;
    for (int i = 0; i < 5; ++i) {
      // A fresh client name each time: forged identities buy nothing unless the node trusts them.
      auto r = client.query(
          *gw, request("user_by_id", {db_value::of(int64_t{1})}, "user-" + std::to_string(i)));
      if (r)
        ++served;
      else if (is(r.error(), errc::rate_limited))
        ++limited;
    }
    INFO("trust_client " << trust);
    CHECK(served == (trust ? 5 : 3));
    CHECK(limited == (trust ? 0 : 2));
  }
}
