#include "messages/database.hpp"

#include "messages/type_ids.hpp"

#include <caf/make_message.hpp>

namespace bulwark {

caf::error with_failed_step(const caf::error& e, failed_step step) {
  return caf::error{e.code(), e.category(), e.context() + caf::make_message(std::move(step))};
}

std::optional<failed_step> failed_step_of(const caf::error& e) {
  auto& ctx = e.context();
  if (ctx.empty() || !ctx.match_element<failed_step>(ctx.size() - 1))
    return std::nullopt;
  return ctx.get_as<failed_step>(ctx.size() - 1);
}

} // namespace bulwark
