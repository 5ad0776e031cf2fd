/*
 * Plugin attributes as a creator receives them: built the way TensorRT's ONNX parser builds them
 * from a node's attributes, or the way other producers may (every attribute of the node forwarded),
 * and copied the way an engine keeps getFieldsToSerialize() (by value: when the engine is
 * deserialised the plugin that produced them is long gone).
 */
#pragma once

#include "NvInferRuntime.h"
#include "pluginHostTensors.h"

#include <list>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace host
{

//! A PluginFieldCollection that owns its names and values.
class Fields
{
public:
    Fields() = default;
    Fields(Fields const&) = delete;
    Fields& operator=(Fields const&) = delete;

    //! ONNX FLOAT/FLOATS: kFLOAT32, one value per element.
    Fields& floats(std::string name, std::vector<float> values)
    {
        mFloats.push_back(std::move(values));
        return add(std::move(name), mFloats.back().data(), nvinfer1::PluginFieldType::kFLOAT32,
            mFloats.back().size());
    }

    //! ONNX INT/INTS: kINT32 (the parser narrows int64 attributes).
    Fields& ints(std::string name, std::vector<int32_t> values)
    {
        mInts.push_back(std::move(values));
        return add(std::move(name), mInts.back().data(), nvinfer1::PluginFieldType::kINT32, mInts.back().size());
    }

    //! ONNX STRING: kCHAR, the characters and their terminating '\0'.
    Fields& text(std::string name, std::string value)
    {
        mTexts.push_back(std::move(value));
        return add(std::move(name), mTexts.back().c_str(), nvinfer1::PluginFieldType::kCHAR, mTexts.back().size() + 1);
    }

    //! A field exactly as given (for malformed ones); its name and data are not copied.
    Fields& raw(nvinfer1::PluginField const& field)
    {
        mFields.push_back(field);
        return *this;
    }

    nvinfer1::PluginFieldCollection const* collection()
    {
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

private:
    Fields& add(std::string name, void const* data, nvinfer1::PluginFieldType type, size_t length)
    {
        mNames.push_back(std::move(name));
        mFields.emplace_back(mNames.back().c_str(), data, type, static_cast<int32_t>(length));
        return *this;
    }

    // Lists: adding an element never moves the ones the fields point to.
    std::list<std::string> mNames;
    std::list<std::vector<float>> mFloats;
    std::list<std::vector<int32_t>> mInts;
    std::list<std::string> mTexts;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

//! The fields TensorRT's ONNX parser passes for a ReweightArgmax node with these attributes (but the
//! `omitted` ones, which the node lacks), as onnx-tensorrt's plugin importer builds them: for each
//! name that the creator's getFieldNames() lists, in that order, the node's attribute of that name
//! if it has one, typed after its ONNX type (FLOATS: kFLOAT32; INT: kINT32, narrowed from int64).
//! Nothing else: the node's plugin_version and plugin_namespace select the creator and are not passed.
inline void addParserFields(Fields& fields, nvinfer1::PluginFieldCollection const& fieldNames, Attributes const& a,
    std::set<std::string> const& omitted = {})
{
    std::map<std::string, int32_t> const ints{{"out_height", a.outHeight}, {"out_width", a.outWidth},
        {"align_corners", a.alignCorners}, {"pack4", a.pack4}, {"mode", a.mode}, {"confidence", a.confidence}};
    for (int32_t i = 0; i < fieldNames.nbFields; ++i)
    {
        std::string const name = fieldNames.fields[i].name;
        if (omitted.count(name) != 0)
        {
            continue;
        }
        if (name == "weights")
        {
            fields.floats(name, a.weights);
        }
        else if (ints.count(name) != 0)
        {
            fields.ints(name, {ints.at(name)});
        }
    }
}

//! What other producers may pass (TensorRT's parser does not): every attribute of the ONNX node
//! forwarded, in the node's order (onnx.helper.make_node sorts them by name, as the exporter's node
//! has them), its plugin_namespace and plugin_version strings (kCHAR) included.
inline void addForwardedNodeAttributes(Fields& fields, Attributes const& a)
{
    fields.ints("align_corners", {a.alignCorners}).ints("confidence", {a.confidence}).ints("mode", {a.mode});
    fields.ints("out_height", {a.outHeight});
    fields.ints("out_width", {a.outWidth}).ints("pack4", {a.pack4});
    fields.text("plugin_namespace", "dannet").text("plugin_version", "1").floats("weights", a.weights);
}

//! A by-value copy of a collection, as an engine stores one; throws on a field type it cannot size.
inline void copyFields(Fields& copy, nvinfer1::PluginFieldCollection const& fc)
{
    for (int32_t i = 0; i < fc.nbFields; ++i)
    {
        nvinfer1::PluginField const& f = fc.fields[i];
        std::string const name = f.name != nullptr ? f.name : "";
        switch (f.type)
        {
        case nvinfer1::PluginFieldType::kFLOAT32:
        {
            auto const* values = static_cast<float const*>(f.data);
            copy.floats(name, std::vector<float>(values, values + f.length));
            break;
        }
        case nvinfer1::PluginFieldType::kINT32:
        {
            auto const* values = static_cast<int32_t const*>(f.data);
            copy.ints(name, std::vector<int32_t>(values, values + f.length));
            break;
        }
        default: throw std::runtime_error("field '" + name + "' has a type this host does not serialise");
        }
    }
}

} // namespace host
