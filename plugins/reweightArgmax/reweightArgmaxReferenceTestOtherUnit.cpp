// A second translation unit of the host reference test: the addresses of the kernel header's host
// helpers as this unit sees them. Outside the CUDA emulation they are inline functions with external
// linkage, one definition for the whole program (the header's inline functions that call them, such
// as makeReweightArgmaxParams, are then the same function in every unit, as the ODR requires).
#include "reweightArgmaxReferenceTestOtherUnit.h"

HostHelpers hostHelpersOfAnotherUnit()
{
    return HostHelpers{&dannet::mulRn, &dannet::sourceScale, &dannet::lerpAt, &dannet::bilinear};
}
