// The kernel header's host helpers, by address, as another translation unit of the host reference
// test sees them (reweightArgmaxReferenceTestOtherUnit.cpp).
#pragma once

#include "reweightArgmaxKernel.cuh"

struct HostHelpers
{
    float (*mulRn)(float, float);
    float (*sourceScale)(int, int, int);
    dannet::Lerp (*lerpAt)(float, int, int, int);
    float (*bilinear)(float, float, float, float, dannet::Lerp const&, dannet::Lerp const&);
};

HostHelpers hostHelpersOfAnotherUnit();
