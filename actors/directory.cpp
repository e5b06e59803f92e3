#include "actors/directory.hpp"

#include <algorithm>

namespace bulwark {

const char* to_string(component_state x) {
  switch (x) {
  case component_state::starting:
    return "starting";
  case component_state::running:
    return "running";
  case component_state::restarting:
    return "restarting";
  case component_state::stopped:
    return "stopped";
  case component_state::failed:
    return "failed";
  }
  return "unknown";
}

void component_directory::declare(const std::string& name, const std::string& supervisor) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(name);
  if (i == entries_.end()) {
    order_.push_back(name);
    component_info info;
    info.name = name;
    info.supervisor = supervisor;
    entries_.emplace(name, std::move(info));
  } else {
    i->second.supervisor = supervisor;
    i->second.state = component_state::starting;
    i->second.handle = nullptr;
  }
}

void component_directory::set_running(const std::string& name, caf::actor handle) {
  std::vector<std::function<void(const caf::actor&)>> waiting;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = entries_.find(name);
    if (i == entries_.end())
      return;
    i->second.state = component_state::running;
    i->second.handle = handle;
    changed_.notify_all();
    auto w = waiting_.find(name);
    if (w != waiting_.end()) {
      waiting = std::move(w->second);
      waiting_.erase(w);
    }
  }
  // Outside the lock: a callback may look the directory up again.
  for (auto& fn : waiting)
    fn(handle);
}

void component_directory::when_running(const std::string& name,
                                       std::function<void(const caf::actor&)> fn) {
  caf::actor now;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = entries_.find(name);
    if (i != entries_.end() && i->second.handle)
      now = i->second.handle;
    else
      waiting_[name].push_back(std::move(fn));
  }
  if (now)
    fn(now);
}

void component_directory::set_exited(const std::string& name, component_state state,
                                     const std::string& reason) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(name);
  if (i == entries_.end())
    return;
  i->second.state = state;
  i->second.handle = nullptr;
  i->second.last_exit_reason = reason;
}

void component_directory::count_restart(const std::string& name) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(name);
  if (i != entries_.end())
    ++i->second.restarts;
}

void component_directory::erase(const std::string& name) {
  std::lock_guard<std::mutex> guard{mtx_};
  entries_.erase(name);
  order_.erase(std::remove(order_.begin(), order_.end(), name), order_.end());
}

caf::actor component_directory::lookup(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(name);
  return i != entries_.end() ? i->second.handle : caf::actor{};
}

std::vector<component_info> component_directory::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<component_info> out;
  out.reserve(order_.size());
  for (auto& name : order_)
    out.push_back(entries_.at(name));
  return out;
}

std::vector<std::string> component_directory::not_ready_reasons() const {
  std::vector<std::string> out;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& name : order_) {
    auto& e = entries_.at(name);
    if (e.state == component_state::running)
      continue;
    std::string line = name + " is " + to_string(e.state);
    if (!e.last_exit_reason.empty())
      line += " (last exit: " + e.last_exit_reason + ")";
    out.push_back(std::move(line));
  }
  return out;
}

} // namespace bulwark

namespace bulwark {

bool component_directory::all_running_locked() const {
  for (auto& name : order_)
    if (entries_.at(name).state != component_state::running)
      return false;
  return true;
}

bool component_directory::wait_all_running(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> guard{mtx_};
  return changed_.wait_for(guard, timeout, [this] { return all_running_locked(); });
}

} // namespace bulwark
