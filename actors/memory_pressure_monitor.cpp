#include "actors/memory_pressure_monitor.hpp"

#include "actors/cleanup_manager.hpp"
#include "actors/clock.hpp"
#include "actors/log.hpp"

#include <caf/all.hpp>
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <optional>

namespace bulwark {

memory_pressure_monitor_metrics::memory_pressure_monitor_metrics(prometheus::Registry& reg) {
  using namespace prometheus;
  level = &BuildGauge()
               .Name("bulwark_memory_pressure_level")
               .Help("Current memory pressure level: 0 low, 1 medium, 2 high, 3 critical")
               .Register(reg)
               .Add({});
  ratio = &BuildGauge()
               .Name("bulwark_memory_pressure_ratio")
               .Help("Last sampled memory use as a fraction of the limit")
               .Register(reg)
               .Add({});
  used_bytes = &BuildGauge()
                    .Name("bulwark_memory_used_bytes")
                    .Help("Last sampled memory use in bytes")
                    .Register(reg)
                    .Add({});
  limit_bytes = &BuildGauge()
                     .Name("bulwark_memory_limit_bytes")
                     .Help("Memory limit the ratio is taken against, in bytes")
                     .Register(reg)
                     .Add({});
  auto& ch = BuildCounter()
                 .Name("bulwark_memory_pressure_changes_total")
                 .Help("Pressure level changes, by the level entered")
                 .Register(reg);
  for (int i = 0; i < 4; ++i)
    changes[i] = &ch.Add({{"level", to_string(static_cast<pressure_level>(i))}});
  sample_errors = &BuildCounter()
                       .Name("bulwark_memory_sample_errors_total")
                       .Help("Memory samples that could not be read")
                       .Register(reg)
                       .Add({});
  actions = &BuildCounter()
                 .Name("bulwark_memory_pressure_actions_total")
                 .Help("Actions subscribers reported in response to pressure changes")
                 .Register(reg)
                 .Add({});
  auto& trim_family = BuildCounter()
                          .Name("bulwark_memory_trims_total")
                          .Help("Requests to give freed heap back to the OS, by result (trimmed, "
                                "or skipped at low pressure)")
                          .Register(reg);
  trims = &trim_family.Add({{"result", "trimmed"}});
  trims_skipped = &trim_family.Add({{"result", "skipped"}});
}

namespace {

constexpr const char* component = "memory_pressure_monitor";

struct memory_pressure_monitor_state {
  static constexpr const char* name = "memory_pressure_monitor";

  memory_pressure_monitor_config cfg;
  detail::memory_source source;
  memory_pressure_monitor_metrics* metrics = nullptr;
  std::shared_ptr<memory_pressure_monitor_memory> memory;
  std::optional<detail::pressure_classifier> classifier;
  detail::memory_sample last;
  uint64_t samples = 0;
  uint64_t sample_errors = 0;
  std::string last_error;
  /// Environmental failures are logged once per interval, not once per sample.
  std::optional<caf::timespan> last_error_logged;
  /// The node's memory account, told every sample (null: none).
  std::shared_ptr<detail::memory_account> account;
  /// When a sample at high pressure or above last trimmed the heap.
  std::optional<caf::timespan> last_pressure_trim;
};

using self_ptr = memory_pressure_monitor_actor::stateful_pointer<memory_pressure_monitor_state>;

void record(self_ptr self, std::string who, pressure_level lvl, std::string what) {
  auto& h = self->state.memory->history;
  h.push_back(pressure_history_entry{now_of(self), std::move(who), lvl, std::move(what)});
  while (h.size() > self->state.cfg.history_size)
    h.pop_front();
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

void broadcast(self_ptr self, const pressure_changed& ev) {
  // One message, shared copy-on-write by every subscriber's mailbox (CAF-0.17.md section 5).
  auto msg = caf::make_message(ev);
  for (auto& s : self->state.memory->subscribers)
    caf::anon_send(caf::actor_cast<caf::actor>(s), msg);
}

/// At high pressure or above (or with much memory kept by the allocator: see on_sample), freed
/// heap goes back to the OS at most every
/// `pressure_trim_interval` (it stalls allocating threads while it runs: see the header). Freed
/// memory the allocator keeps counts as used, in the ratio and in the account.
constexpr auto pressure_trim_interval = std::chrono::seconds(2);

void trim_under_pressure(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  if (st.last_pressure_trim && now - *st.last_pressure_trim < pressure_trim_interval)
    return;
  st.last_pressure_trim = now;
  malloc_trim(0);
  st.metrics->trims->Increment();
}

void on_sample(self_ptr self) {
  auto& st = self->state;
  auto r = st.source.read();
  if (!r.ok) {
    ++st.sample_errors;
    st.metrics->sample_errors->Increment();
    st.last_error = r.error;
    auto now = now_of(self);
    if (!st.last_error_logged || now - *st.last_error_logged >= std::chrono::minutes(1)) {
      st.last_error_logged = now;
      log_warn(component, "cannot sample " + st.source.name + ": " + r.error + " (level stays " +
                              to_string(st.classifier->level()) + ")");
    }
    return;
  }
  ++st.samples;
  st.last = r.sample;
  st.metrics->ratio->Set(r.sample.ratio);
  st.metrics->used_bytes->Set(static_cast<double>(r.sample.used_bytes));
  st.metrics->limit_bytes->Set(static_cast<double>(r.sample.limit_bytes));
  auto prev = st.classifier->level();
  auto changed = st.classifier->update(r.sample.ratio, now_of(self));
  auto level = changed ? *changed : prev;
  if (st.account)
    st.account->observe(r.sample.used_bytes, r.sample.limit_bytes,
                        level == pressure_level::critical);
  // Trim at high pressure, and whenever a quarter of the budget is neither reserved nor the
  // node's own: after a flood, freed rows the allocator keeps (measured: 110-135 MiB of a
  // 256 MiB budget 5 s after bench/memory_drill.sh's flood, at low pressure).
  bool kept = st.account && r.sample.limit_bytes > 0 &&
              st.account->snapshot().unaccounted_bytes > r.sample.limit_bytes / 4;
  if (level >= pressure_level::high || kept)
    trim_under_pressure(self);
  if (!changed)
    return;
  pressure_changed ev{*changed,    prev, r.sample.ratio, r.sample.used_bytes, r.sample.limit_bytes,
                      now_of(self)};
  st.memory->level = *changed;
  st.memory->last = ev;
  st.metrics->level->Set(static_cast<double>(*changed));
  st.metrics->changes[static_cast<size_t>(*changed)]->Increment();
  char ratio[16];
  std::snprintf(ratio, sizeof(ratio), "%.3f", r.sample.ratio);
  auto what = std::string{"level "} + to_string(prev) + " -> " + to_string(*changed) + " (ratio " +
              ratio + ", " + mib(r.sample.used_bytes) + " of " + mib(r.sample.limit_bytes) + ")";
  log_info(component,
           what + "; notifying " + std::to_string(st.memory->subscribers.size()) + " subscribers");
  record(self, component, *changed, std::move(what));
  broadcast(self, ev);
}

void add_subscriber(self_ptr self, const pressure_subscriber_actor& s) {
  auto& subs = self->state.memory->subscribers;
  if (std::find(subs.begin(), subs.end(), s) == subs.end()) {
    subs.push_back(s);
    self->monitor(s);
  }
  caf::anon_send(caf::actor_cast<caf::actor>(s), self->state.memory->last);
}

} // namespace

memory_pressure_monitor_actor::behavior_type
memory_pressure_monitor(self_ptr self, memory_pressure_monitor_config cfg,
                        detail::memory_source source, memory_pressure_monitor_metrics* metrics,
                        std::shared_ptr<memory_pressure_monitor_memory> memory,
                        std::shared_ptr<detail::memory_account> account,
                        std::shared_ptr<component_directory> dir) {
  auto& st = self->state;
  st.account = std::move(account);
  st.cfg = std::move(cfg);
  st.source = std::move(source);
  st.metrics = metrics;
  st.memory = std::move(memory);
  st.classifier.emplace(st.cfg.thresholds, st.cfg.hysteresis, st.cfg.min_dwell);
  st.classifier->resume(st.memory->level, now_of(self));
  st.metrics->level->Set(static_cast<double>(st.memory->level));
  // Subscribers kept from a previous incarnation are watched again by this one.
  for (auto& s : st.memory->subscribers)
    self->monitor(s);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& subs = self->state.memory->subscribers;
    subs.erase(std::remove_if(
                   subs.begin(), subs.end(),
                   [&](const pressure_subscriber_actor& s) { return s.address() == dm.source; }),
               subs.end());
  });
  self->send(self, caf::tick_atom::value);
  if (dir) {
    auto trim = periodic_task("memory_trim", component, std::chrono::minutes(1),
                              caf::make_message(trim_atom::value));
    trim.timeout = std::chrono::seconds(5);
    trim.urgent = true; // a rise is when freed heap should go back to the OS
    register_cleanup_tasks(self, dir, {std::move(trim)});
  }
  return {
      [=](caf::subscribe_atom, pressure_subscriber_actor& s) { add_subscriber(self, s); },
      [=](caf::unsubscribe_atom, pressure_subscriber_actor& s) {
        auto& subs = self->state.memory->subscribers;
        auto i = std::find(subs.begin(), subs.end(), s);
        if (i != subs.end()) {
          self->demonitor(i->address());
          subs.erase(i);
        }
      },
      [=](pressure_action& a) {
        self->state.metrics->actions->Increment();
        log_info(component, a.component + " at " + to_string(a.level) + ": " + a.action);
        record(self, std::move(a.component), a.level, std::move(a.action));
      },
      [=](caf::get_atom) {
        auto& st = self->state;
        pressure_status out;
        out.level = st.classifier->level();
        out.ratio = st.last.ratio;
        out.used_bytes = st.last.used_bytes;
        out.limit_bytes = st.last.limit_bytes;
        out.source = st.source.name;
        out.samples = st.samples;
        out.sample_errors = st.sample_errors;
        out.last_error = st.last_error;
        out.subscribers = st.memory->subscribers.size();
        out.history.assign(st.memory->history.begin(), st.memory->history.end());
        return out;
      },
      [=](sample_atom) { on_sample(self); },
      [=](caf::tick_atom) {
        on_sample(self);
        self->delayed_send(self, self->state.cfg.sample_interval, caf::tick_atom::value);
      },
      [=](trim_atom) {
        // Returns freed heap pages to the OS: the C++ counterpart of the original's forced GC,
        // only when memory is short (see the header: it stalls every allocating thread).
        auto& st = self->state;
        if (st.classifier->level() == pressure_level::low) {
          st.metrics->trims_skipped->Increment();
        } else {
          malloc_trim(0);
          st.metrics->trims->Increment();
        }
        return caf::ok_atom::value;
      },
  };
}

memory_pressure_monitor_actor spawn_memory_pressure_monitor(
    caf::actor_system& sys, memory_pressure_monitor_config cfg, detail::memory_source source,
    memory_pressure_monitor_metrics* metrics,
    std::shared_ptr<memory_pressure_monitor_memory> memory,
    std::shared_ptr<detail::memory_account> account, std::shared_ptr<component_directory> dir) {
  return sys.spawn(memory_pressure_monitor, std::move(cfg), std::move(source), metrics,
                   std::move(memory), std::move(account), std::move(dir));
}

} // namespace bulwark
