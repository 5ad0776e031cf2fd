// Out of memory on demand (host::OutOfMemory, pluginHost.h): this executable replaces the global
// operator new, which the plugin library's allocations reach too (the executable's definition comes
// first in the process's symbol lookup). Outside an OutOfMemory scope it forwards to the operator new
// it replaces (AddressSanitizer's in the sanitized build, else the C++ library's), so that every
// other check of the host keeps its allocator.
#include "pluginHost.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <new>

namespace
{
thread_local bool tOutOfMemory{false};

using NewFunction = void* (*) (std::size_t);

//! The next definition of an operator new after this executable's, by its mangled name.
NewFunction nextDefinition(char const* mangledName)
{
    auto const next = reinterpret_cast<NewFunction>(dlsym(RTLD_NEXT, mangledName));
    if (next == nullptr)
    {
        std::fprintf(stderr, "pluginHostMemory: no %s after this executable's\n", mangledName);
        std::abort();
    }
    return next;
}
} // namespace

namespace host
{

OutOfMemory::OutOfMemory(bool outOfMemory)
    : mPrevious(tOutOfMemory)
{
    tOutOfMemory = outOfMemory;
}

OutOfMemory::~OutOfMemory()
{
    tOutOfMemory = mPrevious;
}

} // namespace host

// _Znwm / _Znam: operator new(unsigned long) and operator new[](unsigned long), size_t on the 64-bit
// targets this host runs on.
static_assert(sizeof(std::size_t) == sizeof(unsigned long), "operator new's mangled names assume size_t is unsigned long");

void* operator new(std::size_t size)
{
    if (tOutOfMemory)
    {
        throw std::bad_alloc();
    }
    static NewFunction const next = nextDefinition("_Znwm");
    return next(size);
}

void* operator new[](std::size_t size)
{
    if (tOutOfMemory)
    {
        throw std::bad_alloc();
    }
    static NewFunction const next = nextDefinition("_Znam");
    return next(size);
}
