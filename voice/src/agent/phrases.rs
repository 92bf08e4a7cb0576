//! What the agent says on its own (prompts, apologies, goodbyes), in the
//! agent's language. The tenant writes the greeting and the answers; these
//! are the sentences it does not, so a Spanish agent does not fall back to
//! English mid-call. Languages without a table speak English, and the docs
//! list which have one. Transcript notes for the operator stay English.

#[derive(Debug, PartialEq, Eq)]
pub struct Phrases {
    pub still_there: &'static str,
    pub silent_goodbye: &'static str,
    pub not_caught: &'static str,
    pub cannot_help: &'static str,
    pub noted: &'static str,
    pub goodbye: &'static str,
    pub leave_message: &'static str,
    pub message_recorded: &'static str,
    pub transferring: &'static str,
    pub nobody_available: &'static str,
    pub closed: &'static str,
    pub lines_busy: &'static str,
}

const EN: Phrases = Phrases {
    still_there: "Are you still there?",
    silent_goodbye: "I have not heard anything, so I will hang up now. Goodbye.",
    not_caught: "Sorry, I did not catch that. Could you say it again?",
    cannot_help: "Sorry, I can not help with that. You can ask for a person.",
    noted: "Thank you, I have noted that. Is there anything else?",
    goodbye: "Thank you for calling. Goodbye.",
    leave_message: "Please leave your message after this sentence.",
    message_recorded: "Thank you, your message has been recorded. Goodbye.",
    transferring: "Let me transfer you to a person.",
    nobody_available:
        "Sorry, no one is available right now. Please leave a message after this sentence.",
    closed: "We are closed right now. Please leave a message after this sentence.",
    lines_busy: "All of our lines are busy right now.",
};

const ES: Phrases = Phrases {
    still_there: "¿Sigue ahí?",
    silent_goodbye: "No he oído nada, así que voy a colgar. Adiós.",
    not_caught: "Perdone, no le he entendido. ¿Puede repetirlo?",
    cannot_help: "Lo siento, no puedo ayudarle con eso. Puede pedir hablar con una persona.",
    noted: "Gracias, lo he anotado. ¿Algo más?",
    goodbye: "Gracias por llamar. Adiós.",
    leave_message: "Deje su mensaje después de esta frase.",
    message_recorded: "Gracias, hemos recibido su mensaje. Adiós.",
    transferring: "Le paso con una persona.",
    nobody_available:
        "Lo siento, ahora no hay nadie disponible. Deje su mensaje después de esta frase.",
    closed: "Ahora estamos cerrados. Deje su mensaje después de esta frase.",
    lines_busy: "Todas nuestras líneas están ocupadas en este momento.",
};

const FR: Phrases = Phrases {
    still_there: "Êtes-vous toujours là ?",
    silent_goodbye: "Je n'entends rien, je vais raccrocher. Au revoir.",
    not_caught: "Pardon, je n'ai pas compris. Pouvez-vous répéter ?",
    cannot_help: "Désolé, je ne peux pas vous aider pour cela. Vous pouvez demander à parler à quelqu'un.",
    noted: "Merci, c'est noté. Puis-je faire autre chose pour vous ?",
    goodbye: "Merci de votre appel. Au revoir.",
    leave_message: "Laissez votre message après cette phrase.",
    message_recorded: "Merci, votre message a été enregistré. Au revoir.",
    transferring: "Je vous mets en relation avec quelqu'un.",
    nobody_available: "Désolé, personne n'est disponible pour le moment. Laissez votre message après cette phrase.",
    closed: "Nous sommes fermés pour le moment. Laissez votre message après cette phrase.",
    lines_busy: "Toutes nos lignes sont occupées pour le moment.",
};

const DE: Phrases = Phrases {
    still_there: "Sind Sie noch da?",
    silent_goodbye: "Ich höre nichts, deshalb lege ich jetzt auf. Auf Wiederhören.",
    not_caught: "Entschuldigung, das habe ich nicht verstanden. Können Sie es wiederholen?",
    cannot_help: "Dabei kann ich leider nicht helfen. Sie können nach einer Person fragen.",
    noted: "Danke, ich habe es notiert. Kann ich sonst noch etwas tun?",
    goodbye: "Danke für Ihren Anruf. Auf Wiederhören.",
    leave_message: "Bitte hinterlassen Sie Ihre Nachricht nach diesem Satz.",
    message_recorded: "Danke, Ihre Nachricht wurde aufgezeichnet. Auf Wiederhören.",
    transferring: "Ich verbinde Sie mit einer Person.",
    nobody_available: "Leider ist gerade niemand erreichbar. Bitte hinterlassen Sie Ihre Nachricht nach diesem Satz.",
    closed: "Wir haben gerade geschlossen. Bitte hinterlassen Sie Ihre Nachricht nach diesem Satz.",
    lines_busy: "Alle unsere Leitungen sind gerade besetzt.",
};

/// The phrases for a language tag (`es-MX` → Spanish), English when there
/// is no table for it.
pub fn for_language(tag: &str) -> &'static Phrases {
    let primary = tag.split(['-', '_']).next().unwrap_or_default();
    match primary.to_ascii_lowercase().as_str() {
        "es" => &ES,
        "fr" => &FR,
        "de" => &DE,
        _ => &EN,
    }
}

/// The languages with their own phrases (docs/voice.md).
pub const LANGUAGES: &[&str] = &["en", "es", "fr", "de"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_subtag_chooses_and_others_speak_english() {
        assert_eq!(for_language("es-MX").goodbye, "Gracias por llamar. Adiós.");
        assert_eq!(for_language("FR").still_there, "Êtes-vous toujours là ?");
        assert_eq!(for_language("de_AT"), &DE);
        assert_eq!(for_language("en-US"), &EN);
        assert_eq!(for_language("ja-JP"), &EN);
        assert_eq!(for_language(""), &EN);
    }
}
