# FindCAF.cmake -- Debian ships CAF 0.17 without a CMake package config or .pc file.
# Provides the imported targets CAF::core, CAF::io (and CAF::openssl when present), the same names
# CAF >= 0.18 exports, so switching to an upstream build needs no change in callers.
#
# Hints: CAF_ROOT_DIR (a prefix with include/ and lib/, e.g. the TSan-instrumented build made by
# scripts/build-caf-tsan.sh).
include(FindPackageHandleStandardArgs)
find_package(Threads REQUIRED)

find_path(CAF_INCLUDE_DIR caf/config.hpp HINTS ${CAF_ROOT_DIR}/include NO_DEFAULT_PATH)
find_path(CAF_INCLUDE_DIR caf/config.hpp)
if(CAF_INCLUDE_DIR AND EXISTS "${CAF_INCLUDE_DIR}/caf/config.hpp")
  file(STRINGS "${CAF_INCLUDE_DIR}/caf/config.hpp" _caf_ver REGEX "^#define CAF_VERSION [0-9]+")
  string(REGEX REPLACE "^#define CAF_VERSION ([0-9]+).*" "\\1" _caf_ver "${_caf_ver}")
  math(EXPR CAF_VERSION_MAJOR "${_caf_ver} / 10000")
  math(EXPR CAF_VERSION_MINOR "(${_caf_ver} / 100) % 100")
  math(EXPR CAF_VERSION_PATCH "${_caf_ver} % 100")
  set(CAF_VERSION "${CAF_VERSION_MAJOR}.${CAF_VERSION_MINOR}.${CAF_VERSION_PATCH}")
endif()

set(_caf_required_vars CAF_INCLUDE_DIR)
foreach(comp IN LISTS CAF_FIND_COMPONENTS)
  find_library(CAF_${comp}_LIBRARY NAMES caf_${comp} HINTS ${CAF_ROOT_DIR}/lib NO_DEFAULT_PATH)
  # With a prefix given, never another build's module: Debian's libcaf_openssl beside a TSan
  # libcaf_core would mix an uninstrumented CAF into the process.
  if(NOT CAF_ROOT_DIR)
    find_library(CAF_${comp}_LIBRARY NAMES caf_${comp})
  endif()
  if(CAF_${comp}_LIBRARY)
    set(CAF_${comp}_FOUND TRUE)
  endif()
  if(CAF_FIND_REQUIRED_${comp})
    list(APPEND _caf_required_vars CAF_${comp}_LIBRARY)
  endif()
endforeach()

find_package_handle_standard_args(CAF REQUIRED_VARS ${_caf_required_vars}
                                  VERSION_VAR CAF_VERSION HANDLE_COMPONENTS)

if(CAF_FOUND)
  foreach(comp IN LISTS CAF_FIND_COMPONENTS)
    if(CAF_${comp}_FOUND AND NOT TARGET CAF::${comp})
      add_library(CAF::${comp} SHARED IMPORTED)
      set_target_properties(CAF::${comp} PROPERTIES
        IMPORTED_LOCATION "${CAF_${comp}_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES Threads::Threads)
    endif()
  endforeach()
  if(TARGET CAF::io AND TARGET CAF::core)
    set_property(TARGET CAF::io APPEND PROPERTY INTERFACE_LINK_LIBRARIES CAF::core)
  endif()
  if(TARGET CAF::openssl AND TARGET CAF::io)
    set_property(TARGET CAF::openssl APPEND PROPERTY INTERFACE_LINK_LIBRARIES CAF::io)
  endif()
endif()
mark_as_advanced(CAF_INCLUDE_DIR)
