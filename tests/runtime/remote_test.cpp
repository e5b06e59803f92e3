// Remote actors between processes: a real bulwarkd publishes its gateway over CAF's network
// layer (BASP on loopback) and this test process, another CAF node, queries it.

#include "messages/fwd.hpp"
#include "support/client_node.hpp"
#include "support/node_process.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <thread>

using namespace bulwark;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// The shipped demo on SQLite, published on a free loopback port.
json remote_config() {
  std::ifstream in{std::string{BULWARK_SOURCE_DIR} + "/config/default.json"};
  auto cfg = json::parse(in);
  json out = {{"backend", cfg["backend"]},
              {"statements", cfg["statements"]},
              {"remote", {{"listen", "127.0.0.1:0"}}}};
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
  test::node_process n{remote_config()};
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
  REQUIRE(n.admin_post("/admin/v1/crash/gateway").status == 202);
  n.wait_status([](const json& s) {
    for (auto& c : s["components"])
      if (c["name"] == "gateway")
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
  auto cfg = remote_config();
  std::ifstream in{std::string{BULWARK_SOURCE_DIR} + "/config/default.json"};
  cfg["transactions"] = json::parse(in)["transactions"]; // record_event: add_event, event_totals
  test::node_process n{cfg};
  auto port = remote_port_of(n);
  client_node client;
  auto gw = client.sys->middleman().remote_actor<remote_gateway_actor>("127.0.0.1", port);
  REQUIRE(gw);
  auto event = [](int64_t id) {
    return std::vector<db_value>{db_value::of(id), db_value::of(int64_t{1}),
                                 db_value::of(std::string{"buy"}), db_value::of(2.5)};
  };

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

TEST_CASE("a remote.listen that cannot be published stops the node with a clear error",
          "[remote][integration]") {
  test::node_process first{remote_config()};
  auto port = remote_port_of(first);
  auto cfg = remote_config();
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
  test::node_process n{remote_config()};
  auto port = remote_port_of(n);
  client_node client;
  auto gw = client.sys->middleman().remote_actor<remote_gateway_actor>("127.0.0.1", port);
  REQUIRE(gw);
  caf::expected<db_result> answer = caf::make_error(caf::sec::request_timeout);
  std::thread caller{[&] { answer = client.query(*gw, request("slow", {})); }};
  // Crash the gateway once the query is in the database (the gateway is waiting on it).
  auto until = std::chrono::steady_clock::now() + 10s;
  while (test::http_get(n.port, "/metrics")
                 .body.find("bulwark_database_queries_total{statement=\"slow\"} 1") ==
             std::string::npos &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  REQUIRE(n.admin_post("/admin/v1/crash/gateway").status == 202);
  caller.join();
  // The front saw the gateway go: component_unavailable, not CAF's request_timeout 8 s later.
  REQUIRE_FALSE(answer);
  CHECK(answer.error().category() == errc_category);
  CHECK(answer.error().code() == static_cast<uint8_t>(errc::component_unavailable));
  CHECK_THAT(test::http_get(n.port, "/metrics").body,
             Catch::Contains("bulwark_requests_total{outcome=\"rejected_unavailable\"} 1"));
}
