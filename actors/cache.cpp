#include "actors/cache.hpp"

#include "actors/cleanup_manager.hpp"
#include "actors/clock.hpp"
#include "actors/detail/adaptive_cache.hpp"
#include "actors/detail/pressure_levels.hpp"
#include "actors/log.hpp"
#include "actors/metric_delta.hpp"
#include "actors/pressure_subscription.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>

namespace bulwark {

cache_metrics::cache_metrics(prometheus::Registry& reg) {
  using namespace prometheus;
  hits = &BuildCounter().Name("bulwark_cache_hits_total").Help("Cache hits").Register(reg);
  misses = &BuildCounter().Name("bulwark_cache_misses_total").Help("Cache misses").Register(reg);
  evictions = &BuildCounter()
                   .Name("bulwark_cache_evictions_total")
                   .Help("Cache evictions, by reason (capacity, expired, pressure)")
                   .Register(reg);
  refused = &BuildCounter()
                 .Name("bulwark_cache_refused_total")
                 .Help("Cache inserts refused, by reason (too_large, admission, memory)")
                 .Register(reg);
  bytes = &BuildGauge()
               .Name("bulwark_cache_bytes")
               .Help("Bytes charged to cache entries")
               .Register(reg);
  budget = &BuildGauge()
                .Name("bulwark_cache_budget_bytes")
                .Help("The cache's current byte budget (follows memory pressure)")
                .Register(reg);
  entries = &BuildGauge().Name("bulwark_cache_entries").Help("Cache entries").Register(reg);
  policy_bytes = &BuildGauge()
                      .Name("bulwark_cache_policy_bytes")
                      .Help("Bytes of the eviction policy's own state (frequency sketch, ghost "
                            "caches), charged to the memory account with the entries")
                      .Register(reg);
}

std::string cache_shard_name(uint32_t i) {
  return "cache/" + std::to_string(i);
}

namespace {

using store = detail::adaptive_cache<std::string, std::string>;

struct cache_state {
  static constexpr const char* name = "cache";

  cache_config cfg;
  uint32_t shard = 0;
  std::shared_ptr<component_directory> dir;
  cache_metrics* metrics = nullptr;
  std::unique_ptr<store> data;
  uint64_t configured_bytes = 0; ///< this shard's share of cache.max_bytes
  pressure_level level = pressure_level::low;
  // Metric handles for this shard, and what the counters last reported.
  prometheus::Counter* hits = nullptr;
  prometheus::Counter* misses = nullptr;
  prometheus::Gauge* bytes = nullptr;
  prometheus::Gauge* budget = nullptr;
  prometheus::Gauge* entries = nullptr;
  prometheus::Gauge* policy_bytes = nullptr;
  uint64_t reported_evictions[detail::eviction_reason_count] = {};
  uint64_t reported_too_large = 0;
  uint64_t reported_admission = 0;
  uint64_t refused_memory = 0;         ///< puts the memory account had no room for
  detail::memory_reservation reserved; ///< the shard's bytes, in the node's memory account
};

using self_ptr = cache_actor::stateful_pointer<cache_state>;

/// Publishes what changed since the last call (counters are deltas of the store's).
void sync_metrics(self_ptr self) {
  auto& st = self->state;
  auto& c = st.data->counters();
  for (size_t r = 0; r < detail::eviction_reason_count; ++r)
    publish_delta(*st.metrics->evictions,
                  {{"reason", detail::to_string(static_cast<detail::eviction_reason>(r))}},
                  c.evictions[r], st.reported_evictions[r]);
  publish_delta(*st.metrics->refused, {{"reason", "too_large"}}, c.refused_too_large,
                st.reported_too_large);
  publish_delta(*st.metrics->refused, {{"reason", "admission"}}, c.refused_admission,
                st.reported_admission);
  st.bytes->Set(static_cast<double>(st.data->bytes()));
  // The policy's sketch and ghosts are memory too: the account holds them with the entries.
  st.reserved.resize(st.data->bytes() + st.data->policy_bytes());
  st.policy_bytes->Set(static_cast<double>(st.data->policy_bytes()));
  st.entries->Set(static_cast<double>(st.data->size()));
  st.budget->Set(static_cast<double>(st.data->max_bytes()));
}

std::string shape_name(const detail::cache_shape& s) {
  if (s.arc)
    return "arc";
  return "window " + std::to_string(static_cast<int>(std::lround(s.window_fraction * 100))) + "% " +
         (s.frequency_admission ? (s.rotate_victims ? "tinylfu" : "tinylfu, victims stay")
                                : "plain");
}

cache_stats stats_of(self_ptr self) {
  auto& st = self->state;
  auto& c = st.data->counters();
  cache_stats s;
  s.shard = st.shard;
  s.entries = st.data->size();
  s.bytes = st.data->bytes();
  s.max_bytes = st.data->max_bytes();
  s.hits = c.hits;
  s.misses = c.misses;
  for (auto e : c.evictions)
    s.evictions += e;
  s.refused = c.refused_too_large + c.refused_admission + st.refused_memory;
  s.shape = shape_name(st.data->shape());
  s.policy_bytes = st.data->policy_bytes();
  return s;
}

void on_pressure(self_ptr self, const pressure_changed& ev) {
  auto& st = self->state;
  if (ev.level == st.level)
    return;
  bool rise = ev.level > st.level;
  st.level = ev.level;
  if (!rise)
    return; // the tick gives the budget back gradually
  auto target = detail::budget_at(st.configured_bytes, ev.level);
  if (target >= st.data->max_bytes())
    return;
  auto before = st.data->size();
  st.data->set_max_bytes(target, now_of(self), detail::eviction_reason::pressure);
  sync_metrics(self);
  pressure_subscription::report(self, *st.dir, cache_shard_name(st.shard), ev.level,
                                "byte budget " + std::to_string(target) + ", evicted " +
                                    std::to_string(before - st.data->size()) + " entries");
}

void on_tick(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  st.data->expire(now, 256);
  auto target = detail::budget_at(st.configured_bytes, st.level);
  auto current = st.data->max_bytes();
  if (current < target) {
    auto step =
        static_cast<uint64_t>(static_cast<double>(st.configured_bytes) * st.cfg.restore_step);
    auto next = std::min(target, current + std::max<uint64_t>(step, 1));
    st.data->set_max_bytes(next, now, detail::eviction_reason::pressure);
    if (next == target)
      pressure_subscription::report(self, *st.dir, cache_shard_name(st.shard), st.level,
                                    "byte budget restored to " + std::to_string(next));
  }
  sync_metrics(self);
}

cache_actor::behavior_type cache(self_ptr self, cache_config cfg, uint32_t shard,
                                 std::shared_ptr<component_directory> dir, cache_metrics* metrics,
                                 std::shared_ptr<detail::memory_account> account) {
  auto& st = self->state;
  if (account)
    st.reserved =
        account->force_reserve(detail::memory_consumer::cache, 0, detail::memory_class::low);
  auto shards = std::max<uint32_t>(cfg.shards, 1);
  st.cfg = cfg;
  st.shard = shard;
  st.dir = std::move(dir);
  st.metrics = metrics;
  st.configured_bytes = cfg.max_bytes / shards;
  detail::adaptive_cache_config store_cfg;
  store_cfg.max_entries = std::max<uint64_t>(cfg.max_entries / shards, 1);
  store_cfg.max_bytes = st.configured_bytes;
  store_cfg.max_entry_bytes = cfg.max_entry_bytes;
  st.data = std::make_unique<store>(store_cfg);
  auto label = std::to_string(shard);
  st.hits = &metrics->hits->Add({{"shard", label}});
  st.misses = &metrics->misses->Add({{"shard", label}});
  st.bytes = &metrics->bytes->Add({{"shard", label}});
  st.budget = &metrics->budget->Add({{"shard", label}});
  st.entries = &metrics->entries->Add({{"shard", label}});
  st.policy_bytes = &metrics->policy_bytes->Add({{"shard", label}});
  sync_metrics(self);
  pressure_subscription::subscribe(self, *st.dir);
  // Expiry frees bytes: urgent at a rise, never deferred.
  auto sweep = periodic_task("cache_sweep/" + label, cache_shard_name(shard), cfg.tick,
                             caf::make_message(caf::tick_atom::value));
  sweep.urgent = true;
  register_cleanup_tasks(self, st.dir, {std::move(sweep)});
  return {
      [=](cache_get& q) {
        auto& st = self->state;
        cache_lookup out;
        if (auto v = st.data->get(q.key, now_of(self))) {
          out.found = true;
          out.value = *v;
          st.hits->Increment();
        } else {
          st.misses->Increment();
        }
        return out;
      },
      [=](cache_put& p) {
        auto& st = self->state;
        auto ttl = p.ttl > caf::timespan{0} ? p.ttl : caf::timespan{st.cfg.default_ttl};
        auto weight = p.key.size() + p.value.size();
        // Room first (the entry is counted as it will be stored; sync_metrics then books the
        // shard's exact bytes, evictions included).
        if (!st.reserved.grow(weight)) {
          ++st.refused_memory;
          st.metrics->refused->Add({{"reason", "memory"}}).Increment();
          return std::string{"refused_memory"};
        }
        auto prio = static_cast<detail::cache_priority>(std::min<uint8_t>(p.priority, 2));
        auto status = st.data->put(p.key, std::move(p.value), weight, now_of(self), ttl, prio);
        sync_metrics(self);
        return std::string{detail::to_string(status)};
      },
      [=](cache_erase& e) {
        auto found = self->state.data->erase(e.key);
        sync_metrics(self);
        return found;
      },
      [=](caf::get_atom) { return stats_of(self); },
      [=](pressure_changed& ev) { on_pressure(self, ev); },
      [=](caf::tick_atom) {
        on_tick(self);
        return caf::ok_atom::value;
      },
  };
}

} // namespace

cache_actor spawn_cache_shard(caf::actor_system& sys, cache_config cfg, uint32_t shard,
                              std::shared_ptr<component_directory> dir, cache_metrics* metrics,
                              std::shared_ptr<detail::memory_account> account) {
  return sys.spawn(cache, std::move(cfg), shard, std::move(dir), metrics, std::move(account));
}

} // namespace bulwark
