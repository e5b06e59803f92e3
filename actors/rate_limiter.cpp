#include "actors/rate_limiter.hpp"

#include "actors/cleanup_manager.hpp"
#include "actors/clock.hpp"
#include "actors/detail/pressure_levels.hpp"
#include "actors/metric_delta.hpp"
#include "actors/pressure_subscription.hpp"

#include <caf/all.hpp>

namespace bulwark {

rate_limiter_metrics::rate_limiter_metrics(prometheus::Registry& reg) {
  using namespace prometheus;
  decisions = &BuildCounter()
                   .Name("bulwark_ratelimit_decisions_total")
                   .Help("Rate limiter decisions: allowed, limited, overflow_allowed, "
                         "overflow_limited, open_allowed")
                   .Register(reg);
  evictions = &BuildCounter()
                   .Name("bulwark_ratelimit_evictions_total")
                   .Help("Keys dropped from the rate limiter's table, by reason")
                   .Register(reg);
  keys = &BuildGauge()
              .Name("bulwark_ratelimit_keys")
              .Help("Keys in the rate limiter's table")
              .Register(reg);
  bytes = &BuildGauge()
               .Name("bulwark_ratelimit_bytes")
               .Help("Bytes charged to the rate limiter's key table")
               .Register(reg);
  budget = &BuildGauge()
                .Name("bulwark_ratelimit_budget_bytes")
                .Help("The key table's current byte budget (follows memory pressure)")
                .Register(reg);
}

std::string rate_limiter_shard_name(uint32_t i) {
  return "rate_limiter/" + std::to_string(i);
}

rate_limiter_config shard_share(rate_limiter_config cfg, uint32_t shards) {
  shards = std::max<uint32_t>(shards, 1);
  auto& t = cfg.table;
  t.max_bytes = (t.max_bytes + shards - 1) / shards;
  if (t.sketch_keys != 0)
    t.sketch_keys = std::max<std::size_t>(1, t.sketch_keys / shards);
  // Rate and burst shrink alike, so the time to refill a full burst stays what was checked.
  t.overflow_rate_per_sec /= shards;
  t.overflow_burst = std::max<uint32_t>(1, t.overflow_burst / shards);
  return cfg;
}

namespace {

struct rate_limiter_state {
  static constexpr const char* name = "rate_limiter";

  rate_limiter_config cfg;
  std::string shard_name; ///< "rate_limiter/<i>"
  std::shared_ptr<component_directory> dir;
  rate_limiter_metrics* metrics = nullptr;
  prometheus::Gauge* keys = nullptr; ///< this shard's gauges
  prometheus::Gauge* bytes = nullptr;
  prometheus::Gauge* budget = nullptr;
  std::unique_ptr<detail::rate_limit_table> table;
  pressure_level level = pressure_level::low;
  std::array<prometheus::Counter*, detail::rate_limit_outcome_count> decision_counters{};
  std::array<uint64_t, detail::rate_limit_eviction_count> reported_evictions{};
  detail::memory_reservation reserved; ///< the table's bytes, in the node's memory account
};

using self_ptr = rate_limiter_actor::stateful_pointer<rate_limiter_state>;

void sync_metrics(self_ptr self) {
  auto& st = self->state;
  for (size_t r = 0; r < detail::rate_limit_eviction_count; ++r) {
    auto why = static_cast<detail::rate_limit_eviction>(r);
    publish_delta(*st.metrics->evictions, {{"reason", detail::to_string(why)}},
                  st.table->evictions(why), st.reported_evictions[r]);
  }
  st.keys->Set(static_cast<double>(st.table->keys()));
  st.bytes->Set(static_cast<double>(st.table->bytes()));
  st.budget->Set(static_cast<double>(st.table->max_bytes()));
  st.reserved.resize(st.table->bytes());
}

rate_limiter_actor::behavior_type rate_limiter(self_ptr self, rate_limiter_config cfg,
                                               uint32_t shard,
                                               std::shared_ptr<component_directory> dir,
                                               rate_limiter_metrics* metrics,
                                               std::shared_ptr<detail::memory_account> account) {
  auto& st = self->state;
  if (account)
    st.reserved =
        account->force_reserve(detail::memory_consumer::limiter, 0, detail::memory_class::normal);
  st.cfg = cfg;
  st.dir = std::move(dir);
  st.metrics = metrics;
  st.shard_name = rate_limiter_shard_name(shard);
  auto label = std::to_string(shard);
  st.keys = &metrics->keys->Add({{"shard", label}});
  st.bytes = &metrics->bytes->Add({{"shard", label}});
  st.budget = &metrics->budget->Add({{"shard", label}});
  st.table = std::make_unique<detail::rate_limit_table>(cfg.table);
  for (size_t i = 0; i < detail::rate_limit_outcome_count; ++i)
    st.decision_counters[i] = &metrics->decisions->Add(
        {{"decision", detail::to_string(static_cast<detail::rate_limit_outcome>(i))}});
  sync_metrics(self);
  pressure_subscription::subscribe(self, *st.dir);
  // Expiry frees key-table bytes: urgent at a rise, never deferred.
  auto expiry = periodic_task("limiter_expiry/" + label, st.shard_name, cfg.expire_interval,
                              caf::make_message(caf::tick_atom::value));
  expiry.urgent = true;
  register_cleanup_tasks(self, st.dir, {std::move(expiry)});
  return {
      [=](limit_check& c) {
        auto& st = self->state;
        auto now = now_of(self);
        auto d = st.table->decide(c.key, now, c.cost);
        st.decision_counters[static_cast<size_t>(d.outcome)]->Increment();
        st.keys->Set(static_cast<double>(st.table->keys()));
        st.bytes->Set(static_cast<double>(st.table->bytes()));
        st.reserved.resize(st.table->bytes());
        limit_decision out;
        out.allowed = d.allowed;
        out.retry_after = d.retry_after;
        out.remaining = d.remaining;
        out.decision = detail::to_string(d.outcome);
        return out;
      },
      [=](caf::get_atom) {
        auto& st = self->state;
        limiter_stats s;
        s.keys = st.table->keys();
        s.bytes = st.table->bytes();
        s.max_bytes = st.table->max_bytes();
        s.allowed = st.table->decisions(detail::rate_limit_outcome::allowed) +
                    st.table->decisions(detail::rate_limit_outcome::overflow_allowed) +
                    st.table->decisions(detail::rate_limit_outcome::open_allowed);
        s.limited = st.table->decisions(detail::rate_limit_outcome::limited) +
                    st.table->decisions(detail::rate_limit_outcome::overflow_limited);
        return s;
      },
      [=](pressure_changed& ev) {
        auto& st = self->state;
        if (ev.level == st.level)
          return;
        st.level = ev.level;
        auto budget = detail::budget_at(st.cfg.table.max_bytes, ev.level);
        auto before = st.table->keys();
        st.table->set_max_bytes(budget, now_of(self));
        sync_metrics(self);
        pressure_subscription::report(self, *st.dir, st.shard_name, ev.level,
                                      "key table budget " + std::to_string(budget) +
                                          " bytes, dropped " +
                                          std::to_string(before - st.table->keys()) + " keys");
      },
      [=](caf::tick_atom) {
        auto& st = self->state;
        st.table->expire(now_of(self), 10'000);
        sync_metrics(self);
        return caf::ok_atom::value;
      },
  };
}

} // namespace

rate_limiter_actor spawn_rate_limiter(caf::actor_system& sys, rate_limiter_config cfg,
                                      uint32_t shard, std::shared_ptr<component_directory> dir,
                                      rate_limiter_metrics* metrics,
                                      std::shared_ptr<detail::memory_account> account) {
  return sys.spawn(rate_limiter, std::move(cfg), shard, std::move(dir), metrics,
                   std::move(account));
}

} // namespace bulwark
