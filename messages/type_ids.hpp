#pragma once
/// The one CAF type-ID block of the whole project: every message type and atom. In CAF 0.17.6
/// the block only feeds a run-time name map (`add_message_types`), which remote messaging needs
/// on every node; `register_types` below is the one call that does it. Vector types are listed
/// one by one because `add_message_types` does not register them implicitly.

#include "messages/breaker.hpp"
#include "messages/cache.hpp"
#include "messages/cleanup.hpp"
#include "messages/database.hpp"
#include "messages/errc.hpp"
#include "messages/gateway.hpp"
#include "messages/limiter.hpp"
#include "messages/perf.hpp"
#include "messages/pool.hpp"
#include "messages/pressure.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>

CAF_BEGIN_TYPE_ID_BLOCK(bulwark, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(bulwark, (bulwark::pressure_level))
CAF_ADD_TYPE_ID(bulwark, (bulwark::pressure_changed))
CAF_ADD_TYPE_ID(bulwark, (bulwark::pressure_action))
CAF_ADD_TYPE_ID(bulwark, (bulwark::pressure_history_entry))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::pressure_history_entry>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::pressure_status))
CAF_ADD_TYPE_ID(bulwark, (bulwark::cleanup_task))
CAF_ADD_TYPE_ID(bulwark, (bulwark::task_outcome))
CAF_ADD_TYPE_ID(bulwark, (bulwark::task_run_report))
CAF_ADD_TYPE_ID(bulwark, (bulwark::cleanup_task_status))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::cleanup_task_status>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::cache_get))
CAF_ADD_TYPE_ID(bulwark, (bulwark::cache_lookup))
CAF_ADD_TYPE_ID(bulwark, (bulwark::cache_put))
CAF_ADD_TYPE_ID(bulwark, (bulwark::cache_erase))
CAF_ADD_TYPE_ID(bulwark, (bulwark::cache_stats))
CAF_ADD_TYPE_ID(bulwark, (bulwark::limit_check))
CAF_ADD_TYPE_ID(bulwark, (bulwark::limit_decision))
CAF_ADD_TYPE_ID(bulwark, (bulwark::limiter_stats))
CAF_ADD_TYPE_ID(bulwark, (bulwark::request_priority))
CAF_ADD_TYPE_ID(bulwark, (bulwark::gateway_request))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_value))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::db_value>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_limit))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_query))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_result))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_step))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::db_step>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_step_result))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::db_step_result>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_call_step))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::db_call_step>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::failed_step))
CAF_ADD_TYPE_ID(bulwark, (std::vector<std::vector<bulwark::db_value>>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_item_result))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::db_item_result>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::failed_item))
CAF_ADD_TYPE_ID(bulwark, (bulwark::perf_sample))
CAF_ADD_TYPE_ID(bulwark, (bulwark::perf_series_info))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::perf_series_info>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::perf_finding))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::perf_finding>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::perf_status))
CAF_ADD_TYPE_ID(bulwark, (bulwark::perf_point))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::perf_point>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::alert_info))
CAF_ADD_TYPE_ID(bulwark, (std::vector<bulwark::alert_info>))
CAF_ADD_TYPE_ID(bulwark, (bulwark::db_call))
CAF_ADD_TYPE_ID(bulwark, (bulwark::pool_status))
CAF_ADD_TYPE_ID(bulwark, (bulwark::breaker_status))
CAF_ADD_TYPE_ID(bulwark, (bulwark::breaker_command))
// bulwark::pressure_subscriber_actor, the handle the monitor takes (spelled out: messages/fwd.hpp
// includes this file).
CAF_ADD_TYPE_ID(bulwark, (caf::typed_actor<caf::reacts_to<bulwark::pressure_changed>>))

CAF_ADD_ATOM(bulwark, bulwark, trim_atom, "trim")
CAF_ADD_ATOM(bulwark, bulwark, sample_atom, "sample")
CAF_ADD_ATOM(bulwark, bulwark, run_atom, "run")
CAF_ADD_ATOM(bulwark, bulwark, restart_atom, "restart")
CAF_ADD_ATOM(bulwark, bulwark, health_atom, "health")
CAF_ADD_ATOM(bulwark, bulwark, stretch_atom, "stretch")
CAF_ADD_ATOM(bulwark, bulwark, alerts_atom, "alerts")
CAF_END_TYPE_ID_BLOCK(bulwark)

namespace bulwark {

/// Registers every Bulwark message type and the `bulwark` error category with a CAF config.
/// Call it on every node (embedded engine, bulwarkd, remote clients).
void register_types(caf::actor_system_config& cfg);

} // namespace bulwark
