#include "messages/errc.hpp"

#include <caf/deep_to_string.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>

namespace bulwark {

const char* to_string(errc x) {
  switch (x) {
  case errc::none:
    return "none";
  case errc::invalid_config:
    return "invalid_config";
  case errc::unknown_component:
    return "unknown_component";
  case errc::component_unavailable:
    return "component_unavailable";
  case errc::fault_injected:
    return "fault_injected";
  case errc::deadline_exceeded:
    return "deadline_exceeded";
  case errc::shutting_down:
    return "shutting_down";
  case errc::restart_intensity_exceeded:
    return "restart_intensity_exceeded";
  case errc::child_start_failed:
    return "child_start_failed";
  case errc::memory_source_unreadable:
    return "memory_source_unreadable";
  case errc::insufficient_memory:
    return "insufficient_memory";
  case errc::unknown_task:
    return "unknown_task";
  case errc::task_target_missing:
    return "task_target_missing";
  case errc::task_hung:
    return "task_hung";
  case errc::invalid_task:
    return "invalid_task";
  case errc::queue_full:
    return "queue_full";
  case errc::circuit_open:
    return "circuit_open";
  case errc::backend_unavailable:
    return "backend_unavailable";
  case errc::backend_error:
    return "backend_error";
  case errc::backend_busy:
    return "backend_busy";
  case errc::pool_closed:
    return "pool_closed";
  case errc::queue_timeout:
    return "queue_timeout";
  case errc::backend_stuck:
    return "backend_stuck";
  case errc::call_cancelled:
    return "call_cancelled";
  case errc::slice_over:
    return "slice_over";
  case errc::call_revoked:
    return "call_revoked";
  case errc::unknown_statement:
    return "unknown_statement";
  case errc::bad_parameters:
    return "bad_parameters";
  case errc::bad_statement:
    return "bad_statement";
  case errc::conflict:
    return "conflict";
  case errc::invalid_data:
    return "invalid_data";
  case errc::rate_limited:
    return "rate_limited";
  case errc::shed:
    return "shed";
  }
  return "unknown_errc";
}

std::string describe(const caf::error& e) {
  if (!e)
    return "none";
  std::string out;
  if (e.category() == errc_category) {
    out = "bulwark: ";
    out += to_string(static_cast<errc>(e.code()));
  } else if (e.category() == caf::atom("system")) {
    out = "system: ";
    out += caf::to_string(static_cast<caf::sec>(e.code()));
  } else if (e.category() == caf::atom("exit")) {
    out = "exit: ";
    out += caf::to_string(static_cast<caf::exit_reason>(e.code()));
  } else {
    out = caf::to_string(e.category());
    out += ": ";
    out += std::to_string(e.code());
  }
  if (!e.context().empty()) {
    out += " ";
    out += caf::deep_to_string(e.context());
  }
  return out;
}

} // namespace bulwark
