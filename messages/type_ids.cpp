#include "messages/type_ids.hpp"

namespace bulwark {

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::bulwark>();
  cfg.add_error_category(errc_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    return describe(caf::error{code, errc_category, ctx});
  });
}

} // namespace bulwark
