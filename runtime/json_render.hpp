#pragma once
/// The one place where the node turns JSON into bytes on the wire. Everything the node renders
/// (query results, names taken from the URL, headers echoed in errors, error details, status)
/// goes through here, so every body is valid UTF-8 by construction: a byte sequence that is not
/// valid UTF-8 is replaced by U+FFFD (nlohmann's error_handler_t::replace), never thrown over.
/// That is lossy on purpose: backends hand BLOBs and invalid text over as plain strings, and they
/// render as text with their invalid bytes replaced (select `hex(col)` for the exact bytes).

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

namespace bulwark {

/// `value` as compact JSON text; invalid UTF-8 in any string becomes U+FFFD. Never throws for
/// invalid text (only std::bad_alloc).
std::string render_json(const nlohmann::json& value);

/// `text` as one JSON string literal, quotes included (render_json of a string).
std::string json_quote(std::string_view text);

/// Appends json_quote(text) to `out`, without a copy of `text` when it needs no escaping.
void append_json_string(std::string& out, std::string_view text);

/// True when `text` is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view text);

} // namespace bulwark
