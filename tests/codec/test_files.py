"""Image folders (tcmcodec.codec.files.list_images)."""

from __future__ import annotations

import pytest

from tcmcodec.codec.files import IMAGE_SUFFIXES, list_images


@pytest.fixture
def folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    for path in (a / "2.png", a / "1.JPG", a / "sub" / "0.ppm", b / "3.webp"):
        path.write_bytes(b"")
    (a / "notes.txt").write_text("not an image")
    (a / "dir.png").mkdir()  # an image suffix, but not a file
    return a, b


def test_a_flat_folder_lists_its_own_images_sorted(folders):
    a, _ = folders
    assert list_images(a) == [a / "1.JPG", a / "2.png"]
    assert list_images(str(a), max_images=1) == [a / "1.JPG"]


def test_recursive_listing_over_several_folders_is_one_sorted_list(folders):
    a, b = folders
    assert list_images([a, b], recursive=True) == [a / "1.JPG", a / "2.png", a / "sub" / "0.ppm", b / "3.webp"]
    assert list_images([b, a]) == [a / "1.JPG", a / "2.png", b / "3.webp"]


def test_missing_folders_and_folders_without_images_are_value_errors(folders, tmp_path):
    a, _ = folders
    with pytest.raises(ValueError, match="dataset folder not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(ValueError, match="dataset folder not found"):
        list_images([a, tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="no dataset folder"):
        list_images([])


@pytest.mark.parametrize("max_images", [0, -1, 1.5, True])
def test_max_images_must_be_a_positive_integer(folders, max_images):
    with pytest.raises(ValueError, match="max_images"):
        list_images(folders[0], max_images)


def test_the_suffixes_cover_what_training_evaluation_and_the_anchors_read():
    assert {".png", ".ppm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp", ".pgm"} == set(IMAGE_SUFFIXES)
