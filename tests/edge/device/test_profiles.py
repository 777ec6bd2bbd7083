"""Device profiles: every shipped YAML loads and is sane; a bad profile fails with one line naming it."""
import pytest
import yaml

from edge.device.profiles import (
    JETPACKS,
    DeviceProfile,
    list_profiles,
    load_profile,
    onnx_opset_for,
    profiles_dir,
    tensorrt_opset_ceiling,
    with_jetpack,
)
from edge.errors import InputError

JETSON_PROFILES = ["orin-nano-4gb", "orin-nano-8gb", "orin-nx-8gb", "orin-nx-16gb", "agx-orin-32gb",
                   "agx-orin-64gb", "xavier-nx", "agx-thor"]
SHIPPED = JETSON_PROFILES + ["host-x86"]


def shipped_mapping(name):
    return yaml.safe_load((profiles_dir() / (name + ".yaml")).read_text(encoding="utf-8"))


def write_profile(tmp_path, data, filename="board.yaml"):
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def assert_one_line(error):
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_every_module_is_shipped():
    assert sorted(list_profiles()) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_is_sane(name):
    profile = load_profile(name)
    assert isinstance(profile, DeviceProfile)
    assert profile.name == name
    assert profile.vision_memory_budget_bytes + profile.os_reserve_bytes < profile.ram_bytes
    assert profile.llm_memory_bytes > 0
    assert profile.workspace_bytes < profile.ram_bytes
    assert 1 <= profile.max_batch <= 10
    assert 1 <= profile.max_slices <= 9
    assert 1024 < profile.max_patches <= 2048  # common frames give 1032-1036 patches per slice
    assert (profile.default_power_mode in profile.power_modes) if profile.power_modes else \
        profile.default_power_mode is None
    assert profile.to_dict()["name"] == name


@pytest.mark.parametrize("name", JETSON_PROFILES)
def test_jetson_profiles_default_to_int8(name):
    profile = load_profile(name)
    assert profile.is_jetson
    assert profile.default_precision == "int8"
    assert profile.tensorrt is not None and profile.compute_capability is not None
    assert profile.power_modes


def test_host_defaults_to_fp32_without_tensorrt():
    profile = load_profile("host-x86")
    assert not profile.is_jetson
    assert profile.default_precision == "fp32"
    assert profile.dla_cores == 0
    assert profile.onnx_opset == 17


def test_device_facts():
    assert load_profile("xavier-nx").tensorrt == "8.5"
    assert load_profile("xavier-nx").onnx_opset == 16
    assert load_profile("xavier-nx").compute_capability == "7.2"
    assert load_profile("agx-thor").compute_capability == "11.0"
    assert load_profile("orin-nano-8gb").dla_cores == 0  # fused off on Orin Nano
    assert load_profile("orin-nano-4gb").workspace_bytes <= 512 * 2**20
    assert all(load_profile(name).compute_capability == "8.7" for name in JETSON_PROFILES if "orin" in name)


def test_onnx_opset_for():
    assert onnx_opset_for("8.5") == 16
    assert onnx_opset_for("8.5.2") == 16
    for version in ("8.6", "10.3", "10.16", "11.1", None):
        assert onnx_opset_for(version) == 17


def test_tensorrt_opset_ceiling():
    assert tensorrt_opset_ceiling("8.5") == 17
    assert tensorrt_opset_ceiling("8.6") == 17
    assert tensorrt_opset_ceiling("10.3") == 20
    assert tensorrt_opset_ceiling("10.16") == 24
    assert tensorrt_opset_ceiling("11.1") == 24
    assert tensorrt_opset_ceiling(None) is None
    for name in SHIPPED:
        profile = load_profile(name)
        assert profile.opset_ceiling is None or profile.onnx_opset <= profile.opset_ceiling


@pytest.mark.parametrize("version", ["8.4", "ten", "8"])
def test_bad_tensorrt_version_is_input_error(version):
    with pytest.raises(InputError) as error:
        onnx_opset_for(version)
    assert version in assert_one_line(error)


def test_load_by_path(tmp_path):
    data = shipped_mapping("orin-nx-16gb")
    data["name"] = "my-carrier-board"
    path = write_profile(tmp_path, data)
    profile = load_profile(str(path))
    assert profile.name == "my-carrier-board"
    assert load_profile(path) == profile  # a Path works too


def test_unknown_name(tmp_path):
    with pytest.raises(InputError) as error:
        load_profile("orin-nano-2gb")
    message = assert_one_line(error)
    assert "unknown target 'orin-nano-2gb'" in message
    assert "orin-nano-4gb" in message and "path" in message


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as error:
        load_profile(tmp_path / "nowhere.yaml")
    assert "nowhere.yaml" in assert_one_line(error)


def test_bad_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\npower_modes: [10W, 15W\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        load_profile(path)
    message = assert_one_line(error)
    assert "broken.yaml" in message and "YAML" in message


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        load_profile(path)
    assert "list.yaml" in assert_one_line(error)


def test_missing_field(tmp_path):
    data = shipped_mapping("orin-nano-8gb")
    del data["max_patches"]
    path = write_profile(tmp_path, data)
    with pytest.raises(InputError) as error:
        load_profile(path)
    message = assert_one_line(error)
    assert "max_patches" in message and str(path) in message


def test_unknown_field(tmp_path):
    data = shipped_mapping("orin-nano-8gb")
    data["max_slice"] = 9
    with pytest.raises(InputError) as error:
        load_profile(write_profile(tmp_path, data))
    assert "max_slice" in assert_one_line(error)


@pytest.mark.parametrize("field, value", [
    ("ram_bytes", "8 GB"),
    ("ram_bytes", True),
    ("python", 3.1),  # an unquoted 3.10
    ("tensorrt", 10.3),
    ("max_batch", 0),
    ("default_precision", "int4"),
    ("default_power_mode", "99W"),
    ("power_modes", "15W"),
    ("name", None),
])
def test_wrong_field(tmp_path, field, value):
    data = shipped_mapping("orin-nano-8gb")
    data[field] = value
    path = write_profile(tmp_path, data)
    with pytest.raises(InputError) as error:
        load_profile(path)
    message = assert_one_line(error)
    assert field in message and "board.yaml" in message


def test_budget_must_fit_in_ram(tmp_path):
    data = shipped_mapping("orin-nano-4gb")
    data["vision_memory_budget_bytes"] = data["ram_bytes"]
    with pytest.raises(InputError) as error:
        load_profile(write_profile(tmp_path, data))
    assert "vision_memory_budget_bytes" in assert_one_line(error)


def test_profile_is_frozen():
    profile = load_profile("orin-nano-8gb")
    with pytest.raises(AttributeError):
        profile.max_batch = 99


# --- JetPack releases ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", JETSON_PROFILES)
def test_shipped_versions_follow_the_jetpack_table(name):
    """Each shipped profile's L4T, CUDA, TensorRT and Python are its JetPack's, and its module runs that JetPack."""
    profile = load_profile(name)
    release = JETPACKS[profile.jetpack]
    assert (profile.l4t, profile.cuda, profile.tensorrt, profile.python) == \
        (release.l4t, release.cuda, release.tensorrt, release.python)
    assert load_profile(name, jetpack=profile.jetpack) == profile


@pytest.mark.parametrize("name, jetpack, versions, opset", [
    ("orin-nx-16gb", "6.0", ("36.3", "12.2", "8.6", "3.10"), 17),
    ("orin-nano-8gb", "5.1", ("35.2", "11.4", "8.5", "3.8"), 16),
    ("orin-nano-4gb", "6.1", ("36.4", "12.6", "10.3", "3.10"), 17),
    ("agx-orin-64gb", "6.0", ("36.3", "12.2", "8.6", "3.10"), 17),
    ("xavier-nx", "5.1", ("35.2", "11.4", "8.5", "3.8"), 16),
    ("agx-thor", "7.0", ("38.2", "13.0", "10.13", "3.12"), 17),
])
def test_load_for_another_jetpack(name, jetpack, versions, opset):
    shipped = load_profile(name)
    profile = load_profile(name, jetpack=jetpack)
    assert profile.jetpack == jetpack
    assert (profile.l4t, profile.cuda, profile.tensorrt, profile.python) == versions
    assert profile.onnx_opset == opset
    assert profile.opset_ceiling is None or profile.onnx_opset <= profile.opset_ceiling
    assert (profile.name, profile.ram_bytes, profile.max_patches, profile.workspace_bytes) == \
        (shipped.name, shipped.ram_bytes, shipped.max_patches, shipped.workspace_bytes)
    if jetpack != shipped.jetpack:
        assert "(JetPack %s" % jetpack in profile.description


def test_jetpack_point_release_maps_to_its_minor():
    assert load_profile("orin-nano-8gb", jetpack="6.2.1") == load_profile("orin-nano-8gb")
    assert load_profile("orin-nx-8gb", jetpack="6.0").tensorrt == "8.6"


def test_jetpack_for_a_profile_file(tmp_path):
    data = shipped_mapping("agx-orin-32gb")
    data["name"] = "my-carrier-board"
    profile = load_profile(write_profile(tmp_path, data), jetpack="5.1")
    assert (profile.name, profile.tensorrt, profile.onnx_opset) == ("my-carrier-board", "8.5", 16)


@pytest.mark.parametrize("name, jetpack, words", [
    ("xavier-nx", "6.0", "xavier-nx (Xavier) cannot run JetPack 6.0: choose one of 5.1"),
    ("xavier-nx", "7.0", "cannot run JetPack 7.0"),
    ("agx-thor", "6.2", "agx-thor (Thor) cannot run JetPack 6.2: choose one of 7.0"),
    ("agx-thor", "5.1", "cannot run JetPack 5.1"),
    ("orin-nano-4gb", "7.0", "(Orin) cannot run JetPack 7.0: choose one of 5.1, 6.0, 6.1, 6.2"),
    ("orin-nano-8gb", "4.6", "JetPack 4.6 is not a supported release"),
    ("orin-nano-8gb", "5.0", "JetPack 5.0 is not a supported release"),
    ("orin-nano-8gb", "6", "bad JetPack version '6'"),
    ("orin-nano-8gb", "six", "bad JetPack version"),
    ("host-x86", "6.2", "host-x86 is not a Jetson module"),
])
def test_jetpack_the_module_cannot_run(name, jetpack, words):
    with pytest.raises(InputError) as error:
        load_profile(name, jetpack=jetpack)
    assert words in assert_one_line(error)


def test_jetpack_for_an_unknown_soc(tmp_path):
    data = shipped_mapping("orin-nano-8gb")
    data["soc"] = "t999"
    profile = load_profile(write_profile(tmp_path, data))
    with pytest.raises(InputError) as error:
        with_jetpack(profile, "6.0")
    assert "'t999'" in assert_one_line(error)
