// The boundary between Python and the core. A pass takes one dict, {field name: value}, whose
// names are the C++ struct members': a scalar is a Python number, a buffer is
// (address, element count, dtype code) from gsplat_lib/_backend.py `buffer` (None: absent).
// Each struct has one table of its fields here (FieldList): a missing or unknown name, a wrong
// dtype or an element count that does not match the field's shape is an error naming the
// field, raised before any pointer is used.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace gsl::bindings {

namespace py = pybind11;

// The dtype codes of _backend.py.
template <class T>
constexpr char dtype_code() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>) return 'f';
  if constexpr (std::is_same_v<U, int32_t>) return 'i';
  if constexpr (std::is_same_v<U, int64_t>) return 'l';
  if constexpr (std::is_same_v<U, bool>) return 'b';
  if constexpr (std::is_same_v<U, uint8_t>) return 'B';
}

inline int64_t product(std::initializer_list<int64_t> sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

// A buffer as Python passes it.
struct Buffer {
  bool given = false;
  std::uintptr_t address = 0;
  int64_t numel = 0;
  char dtype = 0;
};

// `op` and `name` name the field in errors.
inline Buffer to_buffer(py::handle value, const std::string& op, const std::string& name) {
  Buffer b;
  if (value.is_none()) return b;
  if (!PyTuple_Check(value.ptr()) || PyTuple_GET_SIZE(value.ptr()) != 3)
    throw std::invalid_argument(op + ": " + name + ": a buffer is (address, numel, dtype)");
  const auto item = [&](int i) { return py::handle(PyTuple_GET_ITEM(value.ptr(), i)); };
  b.given = true;
  b.address = item(0).cast<std::uintptr_t>();
  b.numel = item(1).cast<int64_t>();
  const char* dtype = PyUnicode_Check(item(2).ptr()) ? PyUnicode_AsUTF8(item(2).ptr()) : nullptr;
  if (dtype == nullptr) throw std::invalid_argument(op + ": " + name + ": a buffer's dtype is a one-letter str");
  b.dtype = dtype[0];
  return b;
}

// Checks a buffer against its field (dtype, element count, presence) and returns its address.
template <class T>
T* checked_ptr(const Buffer& b, const std::string& op, const std::string& name, const char* shape, int64_t expected,
               bool nullable) {
  const auto where = [&] { return op + ": " + name; };
  if (!b.given) {
    if (nullable) return nullptr;
    throw std::invalid_argument(where() + " [" + shape + "] is required, got None");
  }
  if (b.dtype != dtype_code<T>())
    throw std::invalid_argument(where() + ": dtype code '" + std::string(1, b.dtype) + "', expected '" +
                                std::string(1, dtype_code<T>()) + "'");
  if (b.numel != expected)
    throw std::invalid_argument(where() + " [" + shape + "] must have " + std::to_string(expected) + " elements, got " +
                                std::to_string(b.numel));
  return reinterpret_cast<T*>(b.address);
}

// One field of Args: a scalar (set from a number) or a buffer (set from a Buffer, its element
// count given by `size` of the call's Sizes).
template <class Args, class Sizes>
struct Field {
  const char* name;
  void (*set_scalar)(Args&, py::handle);
  void (*set_buffer)(Args&, py::handle, const Sizes&, const std::string& op);
};

template <class Args, class Sizes>
class FieldList {
 public:
  using Entry = Field<Args, Sizes>;
  // check: called on the parsed Args (a consistency check beyond the fields' own), or null.
  FieldList(const char* op, Sizes (*sizes_of)(const Args&), std::vector<Entry> fields,
            void (*check)(const Args&) = nullptr)
      : op_(op), sizes_of_(sizes_of), fields_(std::move(fields)), check_(check) {
    for (const Entry& f : fields_) keys_.push_back(py::reinterpret_steal<py::str>(PyUnicode_InternFromString(f.name)));
  }

  // Args from a fields dict: the scalars first (the sizes depend on them), then the buffers.
  Args parse(const py::dict& given) const {
    std::vector<py::handle> values(fields_.size());
    for (size_t i = 0; i < fields_.size(); ++i) {
      PyObject* value = PyDict_GetItem(given.ptr(), keys_[i].ptr());  // borrowed; null when absent
      if (value == nullptr) {
        check_names(given, std::string(" (and field '") + fields_[i].name + "' is missing)");
        throw std::invalid_argument(op_ + ": missing field '" + fields_[i].name + "'");
      }
      values[i] = value;
    }
    if (static_cast<size_t>(py::len(given)) != fields_.size()) check_names(given, "");
    Args a{};
    for (size_t i = 0; i < fields_.size(); ++i)
      if (fields_[i].set_scalar != nullptr) fields_[i].set_scalar(a, values[i]);
    const Sizes sizes = sizes_of_(a);
    for (size_t i = 0; i < fields_.size(); ++i)
      if (fields_[i].set_buffer != nullptr) {
        fields_[i].set_buffer(a, values[i], sizes, op_);
      }
    if (check_ != nullptr) check_(a);
    return a;
  }

 private:
  // Throws on the first name of `given` that is no field (a misspelling, say).
  void check_names(const py::dict& given, const std::string& detail) const {
    for (const auto& item : given) {
      const std::string key = item.first.cast<std::string>();
      if (find(key) == nullptr) throw std::invalid_argument(op_ + ": unknown field '" + key + "'" + detail);
    }
  }
  const Entry* find(const std::string& name) const {
    for (const Entry& f : fields_)
      if (name == f.name) return &f;
    return nullptr;
  }
  std::string op_;
  Sizes (*sizes_of_)(const Args&);
  std::vector<Entry> fields_;
  std::vector<py::str> keys_;  // the names as interned Python strings: dict lookups without a new str
  void (*check_)(const Args&);
};

// The fields of `first`, then those of `rest`: how the fields several passes share are prepended.
template <class Args, class Sizes>
std::vector<Field<Args, Sizes>> joined(std::vector<Field<Args, Sizes>> first,
                                       const std::vector<Field<Args, Sizes>>& rest) {
  first.insert(first.end(), rest.begin(), rest.end());
  return first;
}

// Binds `<name>_cpu(fields, num_threads)`: run(fields parsed into Args), without the GIL.
template <class Args, class Sizes>
void bind_cpu(py::module_& m, const std::string& name, const FieldList<Args, Sizes>& fields,
              void (*run)(const Args&, int)) {
  m.def(
      (name + "_cpu").c_str(),
      [&fields, run](const py::dict& given, int num_threads) {
        const Args args = fields.parse(given);
        py::gil_scoped_release release;
        run(args, num_threads);
      },
      py::arg("fields"), py::arg("num_threads"));
}

#if GSPLAT_LIB_WITH_CUDA
// Binds `<name>_cuda(fields, device, stream)`: run on torch's stream of the device.
template <class Args, class Sizes>
void bind_cuda(py::module_& m, const std::string& name, const FieldList<Args, Sizes>& fields,
               void (*run)(const Args&, int, std::uintptr_t)) {
  m.def(
      (name + "_cuda").c_str(),
      [&fields, run](const py::dict& given, int device, std::uintptr_t stream) {
        const Args args = fields.parse(given);
        py::gil_scoped_release release;
        run(args, device, stream);
      },
      py::arg("fields"), py::arg("device"), py::arg("stream"));
}
#endif

}  // namespace gsl::bindings

// Defines `const FieldList<Type, Sizes>& name_fields()`, the one list of Type's fields:
// GSL_FIELD_LIST(name, Type, op, sizes_of, {fields...}[, check]).
#define GSL_FIELD_LIST(name, Type, ...)                      \
  const FieldList<Type, Sizes>& name##_fields() {            \
    using Args = Type;                                       \
    static const FieldList<Args, Sizes> list(__VA_ARGS__);   \
    return list;                                             \
  }

// Table entries, inside a FieldList of `Args` and `Sizes` (both type aliases at the use):
// GSL_SCALAR(path, name): the number `name` into a.path (e.g. dims.width).
#define GSL_SCALAR(path, name)                                                                 \
  Field<Args, Sizes> {                                                                         \
    #name, [](Args& a, py::handle v) { a.path = v.cast<std::remove_reference_t<decltype(a.path)>>(); }, nullptr \
  }
// GSL_BUFFER(member, nullable, sizes...): a.member from a buffer of shape [sizes...], an
// expression of the names of Sizes (bound by GSL_SIZE_NAMES at the use).
#define GSL_BUFFER(member, nullable, ...) GSL_BUFFER_AT(member, member, nullable, __VA_ARGS__)
// GSL_BUFFER_AT(path, name, nullable, sizes...): the buffer `name` into a.path (e.g. field.tsdf).
#define GSL_BUFFER_AT(path, name, nullable, ...)                                                 \
  Field<Args, Sizes> {                                                                           \
    #name, nullptr, [](Args& a, py::handle value, const Sizes& s, const std::string& op) {       \
      GSL_SIZE_NAMES(s);                                                                         \
      a.path = checked_ptr<std::remove_pointer_t<decltype(a.path)>>(                             \
          to_buffer(value, op, #name), op, #name, #__VA_ARGS__, product({__VA_ARGS__}), nullable); \
    }                                                                                            \
  }
