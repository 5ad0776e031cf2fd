// ctest (CPU, where the plugin library is built): each library named on the command line is
// unmapped once its last handle is closed (TensorRT's deregisterLibrary closes the one its
// loadLibrary opened). glibc keeps a library mapped for good when it defines an STB_GNU_UNIQUE
// symbol (what GCC makes of inline functions' statics without -fno-gnu-unique, ../CMakeLists.txt):
// then dlclose runs no destructor (the self-registering build's creator stays registered) and the
// next dlopen of the path finds the old library, still initialised.
//
// usage: libraryUnloadsTest <library.so>...
#include <dlfcn.h>

#include <cstdio>

int main(int argc, char** argv)
{
    if (argc < 2)
    {
        std::fprintf(stderr, "libraryUnloadsTest: expected the paths of the plugin libraries to check\n");
        return 2;
    }
    int failures = 0;
    for (int i = 1; i < argc; ++i)
    {
        char const* const path = argv[i];
        void* const handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (handle == nullptr)
        {
            std::printf("FAILED: dlopen %s: %s\n", path, dlerror());
            ++failures;
            continue;
        }
        dlclose(handle);
        void* const stillLoaded = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (stillLoaded != nullptr)
        {
            dlclose(stillLoaded);
            std::printf("FAILED: %s stays mapped after dlclose (readelf --dyn-syms: an UNIQUE symbol?)\n", path);
            ++failures;
            continue;
        }
        std::printf("%s: unmapped after dlclose\n", path);
    }
    return failures == 0 ? 0 : 1;
}
