#include "messages/database.hpp"

#include "messages/type_ids.hpp"

#include <caf/make_message.hpp>

namespace bulwark {

namespace {

template <class T>
caf::error with_last(const caf::error& e, T x) {
  return caf::error{e.code(), e.category(), e.context() + caf::make_message(std::move(x))};
}

template <class T>
std::optional<T> last_of(const caf::error& e) {
  auto& ctx = e.context();
  if (ctx.empty() || !ctx.match_element<T>(ctx.size() - 1))
    return std::nullopt;
  return ctx.get_as<T>(ctx.size() - 1);
}

} // namespace

caf::error with_failed_step(const caf::error& e, failed_step step) {
  return with_last(e, std::move(step));
}

std::optional<failed_step> failed_step_of(const caf::error& e) {
  return last_of<failed_step>(e);
}

caf::error with_failed_item(const caf::error& e, failed_item item) {
  return with_last(e, std::move(item));
}

std::optional<failed_item> failed_item_of(const caf::error& e) {
  return last_of<failed_item>(e);
}

} // namespace bulwark
