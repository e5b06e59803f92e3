// Every type any actor interface sends or answers is in the project's type-ID block
// (messages/type_ids.hpp): a remote node can only name what the block registers, and a type
// left out works locally and fails the first time it crosses the network. The interfaces are
// walked at compile time, so a new message type in messages/fwd.hpp is checked without anyone
// listing it here.

#include "messages/fwd.hpp"
#include "messages/type_ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <typeinfo>
#include <vector>

using namespace bulwark;

namespace {

template <class T>
void check_type(std::vector<std::string>& missing) {
  if constexpr (!std::is_void_v<T> && !caf::has_type_id<T>::value)
    missing.push_back(typeid(T).name());
}

template <class... Ts>
void check_list(caf::detail::type_list<Ts...>, std::vector<std::string>& missing) {
  (check_type<Ts>(missing), ...);
}

template <class... Ts>
void check_outputs(caf::output_tuple<Ts...>, std::vector<std::string>& missing) {
  (check_type<Ts>(missing), ...);
}

template <class In, class Out>
void check_signature(caf::typed_mpi<In, Out>, std::vector<std::string>& missing) {
  check_list(In{}, missing);
  check_outputs(Out{}, missing);
}

template <class... Sigs>
void check_signatures(caf::detail::type_list<Sigs...>, std::vector<std::string>& missing) {
  (check_signature(Sigs{}, missing), ...);
}

template <class Handle>
std::vector<std::string> unregistered() {
  std::vector<std::string> missing;
  check_signatures(typename Handle::signatures{}, missing);
  return missing;
}

} // namespace

TEST_CASE("every message type of every actor interface is in the type-ID block", "[messages]") {
  auto check = [](const char* name, std::vector<std::string> missing) {
    std::string names;
    for (auto& m : missing)
      names += " " + m;
    INFO(name << " sends or answers types outside the block:" << names);
    CHECK(missing.empty());
  };
  check("pressure_subscriber_actor", unregistered<pressure_subscriber_actor>());
  check("memory_pressure_monitor_actor", unregistered<memory_pressure_monitor_actor>());
  check("cleanup_manager_actor", unregistered<cleanup_manager_actor>());
  check("task_timer_actor", unregistered<task_timer_actor>());
  check("connection_actor", unregistered<connection_actor>());
  check("connection_pool_actor", unregistered<connection_pool_actor>());
  check("circuit_breaker_actor", unregistered<circuit_breaker_actor>());
  check("database_actor", unregistered<database_actor>());
  check("cache_actor", unregistered<cache_actor>());
  check("rate_limiter_actor", unregistered<rate_limiter_actor>());
  check("gateway_actor", unregistered<gateway_actor>());
  check("remote_gateway_actor", unregistered<remote_gateway_actor>());
  check("performance_monitor_actor", unregistered<performance_monitor_actor>());
}

TEST_CASE("a batch's answer survives the wire: items with and without errors", "[messages]") {
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  db_result r;
  r.items.resize(2);
  r.items[0].result.rows_affected = 1;
  r.items[0].result.rows = {{db_value::of(int64_t{7})}};
  r.items[1].error =
      with_failed_item(make_error(errc::conflict, std::string{"add"}), failed_item{1, "add", {0}});
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  REQUIRE_FALSE(sink(r));
  db_result back;
  caf::binary_deserializer source{sys, buf};
  REQUIRE_FALSE(source(back));
  REQUIRE(back.items.size() == 2);
  CHECK_FALSE(back.items[0].error);
  CHECK(back.items[0].result.rows_affected == 1);
  CHECK(back.items[0].result.rows == r.items[0].result.rows);
  CHECK(back.items[1].error.code() == static_cast<uint8_t>(errc::conflict));
  auto item = failed_item_of(back.items[1].error);
  REQUIRE(item);
  CHECK(item->succeeded == std::vector<uint32_t>{0});
}
