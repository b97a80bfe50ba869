//! MTCNN on the astronaut (one face) and the coffee cup (none).

use crate::support::{fixture, mtcnn};

/// Recorded once from this implementation on `astronaut.jpg` (512×512) and
/// checked by eye: the box spans brow to chin, the landmarks sit on the
/// eyes, nose tip and mouth corners. On the original PNG the box is
/// [181.1, 62.2, 267.7, 172.1].
const ASTRONAUT_FACE: [f32; 4] = [179.6, 60.8, 268.2, 173.7];
const BOX_TOLERANCE: f32 = 10.0;

#[test]
fn finds_the_astronauts_face_and_landmarks() {
    let faces = mtcnn().detect(&fixture("astronaut.jpg")).unwrap();
    assert_eq!(faces.len(), 1, "expected one face, got {faces:?}");
    let face = faces[0];
    assert!(face.score > 0.99, "{face:?}");
    for (got, want) in face.bbox.iter().zip(ASTRONAUT_FACE) {
        assert!(
            (got - want).abs() <= BOX_TOLERANCE,
            "box {:?}, reference {ASTRONAUT_FACE:?}",
            face.bbox
        );
    }
    let [x1, y1, x2, y2] = face.bbox;
    for [x, y] in face.landmarks {
        assert!(
            (x1..=x2).contains(&x) && (y1..=y2).contains(&y),
            "landmark ({x}, {y}) outside {:?}",
            face.bbox
        );
    }
    // Eyes above the nose, the nose above the mouth, left of right.
    let [left_eye, right_eye, nose, mouth_left, mouth_right] = face.landmarks;
    assert!(left_eye[0] < right_eye[0] && mouth_left[0] < mouth_right[0]);
    assert!(left_eye[1].max(right_eye[1]) < nose[1]);
    assert!(nose[1] < mouth_left[1].min(mouth_right[1]));
}

#[test]
fn finds_no_face_in_a_coffee_cup() {
    let faces = mtcnn().detect(&fixture("coffee.jpg")).unwrap();
    assert!(faces.is_empty(), "{faces:?}");
}
